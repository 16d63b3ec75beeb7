//! Text from the network made safe to show: a broker's error message, a script's message,
//! a tunnel server's refusal must not drive the user's terminal (clear the screen, set the
//! window title, write the clipboard with OSC 52) or reorder what a dialog shows.

/// `text` without terminal control: C0 controls but newline (a tab becomes a space), DEL,
/// C1 controls, whole escape sequences (CSI, OSC, DCS and the like, up to their end), and
/// the Unicode bidirectional overrides, embeddings, isolates and marks.
pub fn safe_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            '\u{1b}' => skip_escape(&mut chars),
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence whose ESC was just read (ECMA-48): CSI up to its
/// final byte; OSC, DCS, SOS, PM and APC up to BEL or ST (`ESC \`); any other escape is
/// two characters.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Unicode's explicit directional formatting characters (UAX #9) and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::safe_text;

    #[test]
    fn terminal_control_is_removed_and_text_kept() {
        let cases = [
            ("\u{1b}[2J\u{1b}[Hcleared", "cleared"),
            ("\u{1b}]0;pwned title\u{7}after", "after"),
            ("\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}clip", "clip"),
            ("\u{1b}]52;c;ZWNobyBwd25lZA==\u{1b}\\st", "st"),
            ("\u{1b}P1;2|data\u{1b}\\dcs", "dcs"),
            ("a\u{9b}31mb\u{9d}c", "a31mbc"),
            ("bell\u{7}\u{8}\u{0}\u{7f}", "bell"),
            ("line one\nline\ttwo\r\n", "line one\nline two\n"),
            (
                "file\u{202e}txt.exe\u{2066}x\u{2069}\u{200f}",
                "filetxt.exex",
            ),
            ("Ünïcödé · 日本", "Ünïcödé · 日本"),
            ("unterminated \u{1b}]0;title", "unterminated "),
            ("lone escape \u{1b}", "lone escape "),
        ];
        for (input, expected) in cases {
            assert_eq!(safe_text(input), expected, "{input:?}");
        }
    }
}
