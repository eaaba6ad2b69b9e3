//! The ciphers of upstream's EncryptionConfiguration providers, each sealing one value under one
//! key. A sealed value is `k8s:enc:<provider>:v1:<key name>:` followed by the provider's
//! payload, as kube-apiserver writes it, so a data directory's values name the key they need:
//!
//! - aescbc: a random 16-byte IV, then AES-CBC with PKCS#7 padding (not authenticated, which is
//!   why upstream now recommends the others; it is what k3s generates);
//! - aesgcm: a random 12-byte nonce, then AES-GCM with the value's store key as associated
//!   data, so a value copied to another key does not open;
//! - secretbox: a random 24-byte nonce, then NaCl's XSalsa20-Poly1305.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use rand::RngCore;

/// Which cipher a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AesCbc,
    AesGcm,
    Secretbox,
}

/// Every sealed value starts with this; a value without it is stored as it is (identity).
pub const ENCRYPTED_MARK: &[u8] = b"k8s:enc:";

impl Kind {
    /// The provider's name in the configuration file and in sealed values.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AesCbc => "aescbc",
            Kind::AesGcm => "aesgcm",
            Kind::Secretbox => "secretbox",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::AesCbc, Kind::AesGcm, Kind::Secretbox]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The key lengths the cipher takes, in bytes.
    pub fn key_lengths(self) -> &'static [usize] {
        match self {
            Kind::AesCbc | Kind::AesGcm => &[16, 24, 32],
            Kind::Secretbox => &[32],
        }
    }

    /// What `status` shows, as k3s names the key types.
    pub fn display(self) -> &'static str {
        match self {
            Kind::AesCbc => "AES-CBC",
            Kind::AesGcm => "AES-GCM",
            Kind::Secretbox => "XSalsa20-Poly1305",
        }
    }
}

/// One named key of a provider.
#[derive(Clone)]
pub struct Key {
    pub kind: Kind,
    pub name: String,
    secret: Vec<u8>,
}

// The secret stays out of logs and panics.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}:{})", self.kind.name(), self.name)
    }
}

/// A sealed value that does not open: wrong key, truncated or altered.
#[derive(Debug, thiserror::Error)]
#[error("{kind} key {name:?} cannot decrypt the value (wrong key, or the value is damaged)", kind = .0.kind.name(), name = .0.name)]
pub struct OpenError(pub Key);

impl Key {
    /// A key; `secret`'s length must be one of `kind.key_lengths()` (the config checks).
    pub fn new(kind: Kind, name: &str, secret: Vec<u8>) -> Key {
        assert!(kind.key_lengths().contains(&secret.len()));
        Key {
            kind,
            name: name.to_string(),
            secret,
        }
    }

    /// The bytes every value this key seals starts with.
    pub fn prefix(&self) -> Vec<u8> {
        format!("k8s:enc:{}:v1:{}:", self.kind.name(), self.name).into_bytes()
    }

    /// `plain` sealed for store key `store_key`, prefix included.
    pub fn seal(&self, store_key: &str, plain: &[u8]) -> Vec<u8> {
        let mut out = self.prefix();
        match self.kind {
            Kind::AesCbc => {
                let iv: [u8; 16] = random();
                out.extend_from_slice(&iv);
                out.extend(cbc_seal(&self.secret, &iv, plain));
            }
            Kind::AesGcm => {
                let nonce: [u8; 12] = random();
                out.extend_from_slice(&nonce);
                out.extend(gcm_seal(&self.secret, &nonce, store_key.as_bytes(), plain));
            }
            Kind::Secretbox => {
                use crypto_secretbox::aead::{Aead, KeyInit};
                let nonce: [u8; 24] = random();
                out.extend_from_slice(&nonce);
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&self.secret)
                    .expect("checked key length");
                let sealed = cipher
                    .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plain)
                    .expect("secretbox seals any length");
                out.extend(sealed);
            }
        }
        out
    }

    /// The plain value of `payload` (what follows this key's prefix).
    pub fn open(&self, store_key: &str, payload: &[u8]) -> Result<Vec<u8>, OpenError> {
        let fail = || OpenError(self.clone());
        match self.kind {
            Kind::AesCbc => {
                let (iv, body) = split(payload, 16).ok_or_else(fail)?;
                cbc_open(&self.secret, iv, body).ok_or_else(fail)
            }
            Kind::AesGcm => {
                let (nonce, body) = split(payload, 12).ok_or_else(fail)?;
                gcm_open(&self.secret, nonce, store_key.as_bytes(), body).ok_or_else(fail)
            }
            Kind::Secretbox => {
                use crypto_secretbox::aead::{Aead, KeyInit};
                let (nonce, body) = split(payload, 24).ok_or_else(fail)?;
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&self.secret)
                    .expect("checked key length");
                cipher
                    .decrypt(crypto_secretbox::Nonce::from_slice(nonce), body)
                    .map_err(|_| fail())
            }
        }
    }
}

/// Random bytes from the thread's generator (a CSPRNG seeded from the OS).
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn split(payload: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (payload.len() >= at).then(|| payload.split_at(at))
}

fn cbc_seal(key: &[u8], iv: &[u8], plain: &[u8]) -> Vec<u8> {
    fn seal<C: aes::cipher::BlockCipherEncrypt + aes::cipher::KeyInit>(
        key: &[u8],
        iv: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        cbc::Encryptor::<C>::new_from_slices(key, iv)
            .expect("checked key and IV length")
            .encrypt_padded_vec::<Pkcs7>(plain)
    }
    match key.len() {
        16 => seal::<aes::Aes128>(key, iv, plain),
        24 => seal::<aes::Aes192>(key, iv, plain),
        _ => seal::<aes::Aes256>(key, iv, plain),
    }
}

fn cbc_open(key: &[u8], iv: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    fn open<C: aes::cipher::BlockCipherDecrypt + aes::cipher::KeyInit>(
        key: &[u8],
        iv: &[u8],
        body: &[u8],
    ) -> Option<Vec<u8>> {
        cbc::Decryptor::<C>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec::<Pkcs7>(body)
            .ok()
    }
    match key.len() {
        16 => open::<aes::Aes128>(key, iv, body),
        24 => open::<aes::Aes192>(key, iv, body),
        _ => open::<aes::Aes256>(key, iv, body),
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

fn gcm_seal(key: &[u8], nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let payload = Payload { msg: plain, aad };
    let nonce = aes_gcm::Nonce::from(*nonce);
    let sealed = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key).map(|c| c.encrypt(&nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.encrypt(&nonce, payload)),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key).map(|c| c.encrypt(&nonce, payload)),
    };
    sealed
        .expect("checked key length")
        .expect("AES-GCM seals any value under 64 GiB")
}

fn gcm_open(key: &[u8], nonce: &[u8], aad: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let payload = Payload { msg: body, aad };
    let nonce = aes_gcm::Nonce::try_from(nonce).ok()?;
    let opened = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .decrypt(&nonce, payload),
        24 => Aes192Gcm::new_from_slice(key)
            .ok()?
            .decrypt(&nonce, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(&nonce, payload),
    };
    opened.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Kind; 3] = [Kind::AesCbc, Kind::AesGcm, Kind::Secretbox];

    fn key(kind: Kind, name: &str, len: usize) -> Key {
        Key::new(kind, name, random::<32>()[..len].to_vec())
    }

    #[test]
    fn every_provider_and_key_length_round_trips() {
        for kind in ALL {
            for &len in kind.key_lengths() {
                let k = key(kind, "k1", len);
                for plain in [&b""[..], b"x", b"sixteen bytes!!!", &[7u8; 1000]] {
                    let sealed = k.seal("/registry/core/secrets/ns/a", plain);
                    let prefix = format!("k8s:enc:{}:v1:k1:", kind.name());
                    assert!(sealed.starts_with(prefix.as_bytes()), "{kind:?}");
                    let payload = &sealed[prefix.len()..];
                    if plain.len() >= 8 {
                        assert!(!payload.windows(plain.len()).any(|w| w == plain));
                    }
                    let opened = k.open("/registry/core/secrets/ns/a", payload).unwrap();
                    assert_eq!(opened, plain, "{kind:?} {len}");
                }
            }
        }
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        for kind in ALL {
            let k = key(kind, "k1", 32);
            assert_ne!(k.seal("/k", b"same"), k.seal("/k", b"same"), "{kind:?}");
        }
    }

    #[test]
    fn another_key_of_the_same_name_is_refused() {
        for kind in ALL {
            let right = key(kind, "k1", 32);
            let wrong = key(kind, "k1", 32);
            let sealed = right.seal("/k", b"a secret value of some length");
            let payload = &sealed[right.prefix().len()..];
            // CBC without authentication can unpad by chance; what it yields is never the value.
            match wrong.open("/k", payload) {
                Err(e) => assert!(e.to_string().contains("cannot decrypt"), "{e}"),
                Ok(v) => {
                    assert_eq!(kind, Kind::AesCbc);
                    assert_ne!(v, b"a secret value of some length");
                }
            }
        }
    }

    #[test]
    fn damaged_or_short_values_are_refused() {
        for kind in [Kind::AesGcm, Kind::Secretbox] {
            let k = key(kind, "k1", 32);
            let mut sealed = k.seal("/k", b"value");
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            assert!(
                k.open("/k", &sealed[k.prefix().len()..]).is_err(),
                "{kind:?}"
            );
        }
        for kind in ALL {
            assert!(
                key(kind, "k1", 32).open("/k", b"short").is_err(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_store_key() {
        let k = key(Kind::AesGcm, "k1", 32);
        let sealed = k.seal("/registry/core/secrets/a/one", b"value");
        let payload = &sealed[k.prefix().len()..];
        assert!(k.open("/registry/core/secrets/a/two", payload).is_err());
    }
}
