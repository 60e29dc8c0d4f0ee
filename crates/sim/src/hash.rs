//! Deterministic hashing.
//!
//! Every generated value is a pure function of `(seed, coordinates…)`: that is what lets the emulator hold
//! 100,000 devices and 10,000,000 findings without storing any of them, and replay any snapshot exactly.

/// SplitMix64 finaliser: cheap, and good enough to make neighbouring inputs look unrelated.
#[inline]
pub(crate) const fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds one more coordinate into a hash.
#[inline]
pub(crate) const fn mix(h: u64, v: u64) -> u64 {
    splitmix(h ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(23))
}

/// A uniform number in `[0, 1)`.
#[inline]
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `[0, n)` (Lemire's multiply-shift; `0` when `n == 0`).
#[inline]
pub(crate) const fn below(h: u64, n: u64) -> u64 {
    ((h as u128 * n as u128) >> 64) as u64
}

/// Picks from `(item, weight)` pairs. The tables are static and never empty.
pub(crate) fn pick<T: Copy>(h: u64, items: &[(T, u32)]) -> T {
    let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut x = below(h, total.max(1));
    for (item, w) in items {
        let w = u64::from(*w);
        if x < w {
            return *item;
        }
        x -= w;
    }
    // Unreachable with non-empty tables; fall back to the last entry rather than panic.
    items[items.len() - 1].0
}

/// A keyed 256-bit digest used to sign tokens and SAS URLs so that the emulator can recognise its own.
///
/// Not a cryptographic MAC; it only has to make accidental or casual forgery fail, for tests.
pub(crate) struct Mac {
    key: [u64; 4],
}

impl Mac {
    pub(crate) fn new(key: [u64; 4]) -> Mac {
        Mac { key }
    }

    pub(crate) fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut s = self.key;
        for chunk in data.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let w = u64::from_le_bytes(w);
            s[0] = mix(s[0] ^ w, s[3]);
            s[1] = mix(s[1].wrapping_add(w), s[0]);
            s[2] = mix(s[2] ^ w.rotate_left(31), s[1]);
            s[3] = mix(s[3].wrapping_add(w.rotate_left(13)), s[2]);
        }
        let len = data.len() as u64;
        let mut out = [0u8; 32];
        for (i, part) in out.chunks_mut(8).enumerate() {
            let v = mix(mix(s[i] ^ len, s[(i + 1) % 4]), self.key[i]);
            part.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Compares in time independent of where the first difference is (habit more than necessity here).
    pub(crate) fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        let want = self.sign(data);
        if sig.len() != want.len() {
            return false;
        }
        want.iter().zip(sig).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Machine ids: 40 lowercase hex characters that look random but encode the device index, so that
/// `GET /api/machines/{id}` is a lookup instead of a scan or a table.
///
/// The first 16 hex digits are a keyed Feistel permutation of the index; the other 24 are a hash of the
/// index, checked on decode so that a made-up id is not found.
pub(crate) struct IdCodec {
    seed: u64,
    rounds: [u64; 4],
}

impl IdCodec {
    pub(crate) fn new(seed: u64) -> IdCodec {
        let base = mix(seed, 0x1D);
        IdCodec {
            seed,
            rounds: [mix(base, 1), mix(base, 2), mix(base, 3), mix(base, 4)],
        }
    }

    fn permute(&self, x: u64) -> u64 {
        let (mut l, mut r) = ((x >> 32) as u32, x as u32);
        for k in self.rounds {
            let f = (mix(k, u64::from(r)) >> 32) as u32;
            (l, r) = (r, l ^ f);
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    fn unpermute(&self, y: u64) -> u64 {
        let (mut l, mut r) = ((y >> 32) as u32, y as u32);
        for k in self.rounds.iter().rev() {
            let f = (mix(*k, u64::from(l)) >> 32) as u32;
            (l, r) = (r ^ f, l);
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    fn tail(&self, index: u32) -> (u64, u32) {
        let h = mix(mix(self.seed, 0x1D2), u64::from(index));
        (h, (mix(h, 7) >> 32) as u32)
    }

    pub(crate) fn encode(&self, index: u32) -> String {
        let (a, b) = self.tail(index);
        format!("{:016x}{a:016x}{b:08x}", self.permute(u64::from(index)))
    }

    /// The index of a machine id, if it is one this emulator could have issued. Case-insensitive.
    pub(crate) fn decode(&self, id: &str) -> Option<u32> {
        if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let head = u64::from_str_radix(id.get(..16)?, 16).ok()?;
        let index = u32::try_from(self.unpermute(head)).ok()?;
        self.encode(index).eq_ignore_ascii_case(id).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_forgeries() {
        let codec = IdCodec::new(7);
        for i in [0u32, 1, 2, 199, 100_000, u32::MAX] {
            let id = codec.encode(i);
            assert_eq!(id.len(), 40);
            assert_eq!(codec.decode(&id), Some(i));
            assert_eq!(codec.decode(&id.to_uppercase()), Some(i));
            let mut forged = id.clone().into_bytes();
            forged[39] = if forged[39] == b'0' { b'1' } else { b'0' };
            assert_eq!(codec.decode(&String::from_utf8(forged).unwrap()), None);
        }
        assert_eq!(codec.decode("zz"), None);
        assert_eq!(codec.decode("ééééééééééééééééééééé"), None);
    }

    #[test]
    fn pick_respects_weights() {
        let items = [("a", 1u32), ("b", 0), ("c", 3)];
        let n = (0..4000u64)
            .filter(|i| pick(splitmix(*i), &items) == "c")
            .count();
        assert!((2700..3300).contains(&n), "{n}");
        assert!((0..1000u64).all(|i| pick(splitmix(i), &items) != "b"));
    }

    #[test]
    fn mac_detects_changes() {
        let mac = Mac::new([1, 2, 3, 4]);
        let sig = mac.sign(b"hello");
        assert!(mac.verify(b"hello", &sig));
        assert!(!mac.verify(b"hellp", &sig));
        assert!(!Mac::new([1, 2, 3, 5]).verify(b"hello", &sig));
    }
}
