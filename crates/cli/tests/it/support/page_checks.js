// The page checks of page_checks.rs, run in the page by WebDriver as a function body:
// `arguments[0]` names the check, `arguments[1]` holds its limits.
//
// "mark": marks each visible control with data-tab-probe and returns the marks.
// "fits": returns what does not fit the window, in words (nothing when all fits).
const [check, limits] = arguments;

// Every link, button, field and disclosure that is drawn and not disabled.
// (checkVisibility, because the content of a closed <details> keeps its boxes in Chromium
// but is not drawn.)
const controls = () =>
  Array.from(document.querySelectorAll('a[href], button, input, select, textarea, summary'))
    .filter((e) => !e.disabled && e.type !== 'hidden' && e.checkVisibility());

// An element as a person finds it: tag, id, classes, its first words.
const describe = (e) => {
  let name = e.tagName.toLowerCase();
  if (e.id) name += '#' + e.id;
  if (e.classList.length) name += '.' + Array.from(e.classList).join('.');
  const own = e.tagName === 'SELECT' ? '' : e.innerText || e.value;
  const words = (own || e.getAttribute('aria-label') || '').trim().replace(/\s+/g, ' ').slice(0, 50);
  return words ? name + ' "' + words + '"' : name;
};

// Hidden from sight on purpose: clipped to nothing for screen readers, as the table heads
// of a narrow window are.
const hidden = (e) => {
  for (let a = e; a && a !== document.body; a = a.parentElement) {
    if (getComputedStyle(a).clip !== 'auto') return true;
  }
  return false;
};

// The page itself does not scroll sideways, and tells a phone how wide it is.
const page = (problems) => {
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    problems.push('the page scrolls sideways: ' + root.scrollWidth + ' px wide');
  }
  const viewport = document.querySelector('meta[name="viewport"]');
  if (!viewport || !viewport.content.includes('width=device-width')) {
    problems.push('no <meta name="viewport" content="width=device-width">');
  }
};

// Every line of text lies inside the window and inside each box that hides its overflow;
// a box that scrolls sideways (overflow-x: auto) shows the rest when scrolled.
const text = (problems, width) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const owner = node.parentElement;
    if (!node.data.trim() || !owner || owner.closest('select, script, style, noscript')) continue;
    if (!owner.checkVisibility() || hidden(owner)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const lines = Array.from(range.getClientRects()).filter((r) => r.width > 0);
    each: for (const line of lines) {
      for (let a = owner; a && a !== document.body; a = a.parentElement) {
        const style = getComputedStyle(a);
        if (style.overflowX === 'auto' || style.overflowX === 'scroll') continue each;
        if (style.overflowX === 'hidden' || style.overflowX === 'clip') {
          const box = a.getBoundingClientRect();
          if (line.left < box.left - 1 || line.right > box.right + 1) {
            problems.push('text cut off by ' + describe(a) + ': ' + describe(owner));
            break each;
          }
        }
      }
      if (line.left < -1 || line.right > width + 1) {
        problems.push("text past the window's edge (" + Math.round(line.left) + '..' +
          Math.round(line.right) + ' px): ' + describe(owner));
        break;
      }
    }
  }
};

// Every control lies inside the window, is the thing under its own middle (nothing covers
// it), and is tall enough to hit; a text field is wide enough to type in, and a choice list
// shows each of its choices whole (none is cut off when chosen). A check box is hit
// through its label, so its label is what is measured.
const fields = (problems, width) => {
  const typed = ['text', 'password', 'number', 'search', 'email', 'url'];
  const measure = document.createElement('canvas').getContext('2d');
  for (const control of controls()) {
    if (hidden(control)) continue;
    control.scrollIntoView({ block: 'center', inline: 'nearest' });
    const box = control.getBoundingClientRect();
    if (box.left < -1 || box.right > width + 1) {
      problems.push("control past the window's edge (" + Math.round(box.left) + '..' +
        Math.round(box.right) + ' px): ' + describe(control));
      continue;
    }
    const under = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    const label = control.labels && control.labels[0];
    if (!under || !(control.contains(under) || (label && label.contains(under)))) {
      problems.push('control covered by ' + (under ? describe(under) : 'nothing') + ': ' +
        describe(control));
    }
    const small = control.type === 'checkbox' || control.type === 'radio';
    if (small && !label) problems.push('check box without a label: ' + describe(control));
    const target = small && label ? label.getBoundingClientRect() : box;
    const inline = control.tagName === 'A' && getComputedStyle(control).display === 'inline';
    if (!inline && target.height < limits.minTargetPx - 0.5) {
      problems.push('control ' + Math.round(target.height) + ' px high: ' + describe(control));
    }
    const field = control.tagName === 'TEXTAREA' ||
      (control.tagName === 'INPUT' && typed.includes(control.type));
    if (field && box.width < limits.minFieldPx) {
      problems.push('field ' + Math.round(box.width) + ' px wide: ' + describe(control));
    }
    if (control.tagName === 'SELECT') {
      const style = getComputedStyle(control);
      measure.font = style.font;
      const room = control.clientWidth - parseFloat(style.paddingLeft) -
        parseFloat(style.paddingRight) - limits.arrowPx;
      for (const option of control.options) {
        const needs = measure.measureText(option.text).width;
        if (needs > room) {
          problems.push('choice cut off (' + Math.round(needs) + ' px of text in ' +
            Math.round(room) + ' px): ' + describe(control) + ': ' + option.text);
        }
      }
    }
  }
  window.scrollTo(0, 0);
};

if (check === 'mark') {
  return controls().map((e, i) => {
    e.dataset.tabProbe = String(i);
    return String(i);
  });
}
const width = document.documentElement.clientWidth;
const problems = [];
page(problems);
text(problems, width);
fields(problems, width);
return problems;
