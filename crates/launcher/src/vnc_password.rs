//! The password file of TigerVNC's `vncviewer` (`-passwd FILE`, the format `vncpasswd`
//! writes): the first 8 bytes of the password, padded with zeros, DES-encrypted under VNC's
//! fixed key. The format only hides the password from a glance: the file's protection is
//! its mode (0600) in a 0700 directory, and its removal when the launcher ends.

use des::Des;
use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use zeroize::Zeroizing;

/// VNC's fixed key, as VNC's DES (which reads key bits in the other order) uses it.
const VNC_KEY: [u8; 8] = [23, 82, 107, 6, 35, 78, 88, 7];

/// The 8-byte contents of a password file for `password` (VNC authentication uses at most
/// the first 8 bytes of a password).
pub fn password_file(password: &str) -> Zeroizing<[u8; 8]> {
    let key = VNC_KEY.map(u8::reverse_bits);
    let mut block = Zeroizing::new([0u8; 8]);
    for (slot, byte) in block.iter_mut().zip(password.bytes()) {
        *slot = byte;
    }
    let cipher = Des::new(GenericArray::from_slice(&key));
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block[..]));
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from TigerVNC 1.12's `vncpasswd -f` (Debian's tigervnc-tools).
    #[test]
    fn matches_vncpasswd() {
        for (password, expected) in [
            ("password", "dbd83cfd727a1458"),
            ("Pa55w0rd!", "d9e40b514e14d993"),
            ("abc", "9c0a172d3482e122"),
        ] {
            assert_eq!(
                portcullis_proto::hex::encode(&*password_file(password)),
                expected,
                "{password}"
            );
        }
    }
}
