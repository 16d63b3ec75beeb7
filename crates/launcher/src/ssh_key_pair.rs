//! The Ed25519 key pair a launcher makes for each ticket request (docs/protocol.md
//! §6.8.4): its public half goes to the broker in `client.ssh_public_key`, which answers an
//! SSH certificate for it; the private half never leaves the launcher and reaches `ssh`
//! only as a 0600 file in a 0700 directory removed at the end
//! (`Portcullis.sshIdentity()`).

use core::fmt;

use portcullis_proto::ssh::Ed25519PublicKey;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{Certificate, LineEnding, PrivateKey, public::KeyData};
use zeroize::Zeroizing;

/// A fresh Ed25519 key pair for one launch. `Debug` shows the public half only; the
/// private half is zeroized on drop (by `ssh-key`).
pub struct SshKeyPair {
    private: PrivateKey,
    public: Ed25519PublicKey,
}

impl SshKeyPair {
    /// Draws a new key pair from the system's random number generator.
    pub fn generate() -> Result<Self, portcullis_proto::Error> {
        let seed = Zeroizing::new(portcullis_proto::random::array::<32>()?);
        let pair = Ed25519Keypair::from_seed(&seed);
        let public = Ed25519PublicKey::from_bytes(pair.public.0);
        let mut private = PrivateKey::from(pair);
        private.set_comment("portcullis-launcher");
        Ok(Self { private, public })
    }

    /// The public key as an OpenSSH line, for `client.ssh_public_key`.
    pub fn public_line(&self) -> String {
        self.public.to_openssh()
    }

    /// The private key in OpenSSH's format (unencrypted), for `ssh -i`.
    pub fn private_openssh(&self) -> Result<Zeroizing<String>, String> {
        self.private
            .to_openssh(LineEnding::LF)
            .map_err(|error| format!("the SSH key could not be encoded: {error}"))
    }

    /// Whether `line` is an OpenSSH certificate for this key pair.
    pub fn certifies(&self, line: &str) -> bool {
        Certificate::from_openssh(line).is_ok_and(|certificate| {
            *certificate.public_key()
                == KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(*self.public.as_bytes()))
        })
    }
}

impl fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshKeyPair({})", self.public_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_is_new_and_debug_shows_no_private_key() {
        let one = SshKeyPair::generate().unwrap();
        let two = SshKeyPair::generate().unwrap();
        assert_ne!(one.public_line(), two.public_line());
        let private = one.private_openssh().unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let shown = format!("{one:?}");
        assert!(
            !shown.contains("PRIVATE") && shown.contains("ssh-ed25519 "),
            "{shown}"
        );
        assert!(!one.certifies("ssh-ed25519-cert-v01@openssh.com AAAA"));
    }
}
