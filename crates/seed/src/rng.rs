//! Deterministic randomness without the `rand` crate: SplitMix64 derives seeds and hashes, xoshiro256** draws.
//!
//! Every row is derived from `(seed, stream tag, indices)` alone, never from a generator shared across users, so a
//! user's rows do not depend on the order, chunking or threading of the generation, and any user's facts (its id,
//! its sign-up time, how many comments it wrote) can be recomputed from its index when another user's row refers
//! to it.

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: a bijection on `u64` that scrambles every input bit into every output bit.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of `(seed, tag, a, b)`.
pub(crate) const fn hash(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    let h = mix64(seed ^ mix64(tag.wrapping_mul(GAMMA)));
    let h = mix64(h ^ a.wrapping_mul(0xd1b5_4a32_d192_ed03));
    mix64(h ^ b.wrapping_mul(0xaef1_7502_108e_f2d9).wrapping_add(GAMMA))
}

/// A value that is distinct for every `index` under one `(seed, tag)`: `mix64` is a bijection, so unlike
/// [`hash`] this cannot collide within a population (used for values that carry a unique constraint).
pub(crate) const fn injective(seed: u64, tag: u64, index: u64) -> u64 {
    mix64(hash(seed, tag, u64::MAX, u64::MAX) ^ index)
}

/// A 128-bit id shaped like a version-4 UUID, derived from `(seed, tag, a, b)`.
pub(crate) fn uuid(seed: u64, tag: u64, a: u64, b: u64) -> [u8; 16] {
    let high = hash(seed, tag, a, b);
    let low = mix64(high ^ GAMMA);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

/// xoshiro256**: a small, fast generator with a 2^256 period, seeded through SplitMix64.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for the stream `(seed, tag, a, b)`.
    pub(crate) fn stream(seed: u64, tag: u64, a: u64, b: u64) -> Self {
        Self::from_seed(hash(seed, tag, a, b))
    }

    /// A generator whose state is filled by SplitMix64 from `seed` (never all zero).
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(GAMMA);
            mix64(state)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n` (0 when `n` is 0), by Lemire's multiply-shift; its bias below 2^-32 does not matter
    /// for synthetic data.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// A float in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given relative weights (not all zero).
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut target = self.below(total);
        for (index, weight) in weights.iter().enumerate() {
            let weight = u64::from(*weight);
            if target < weight {
                return index;
            }
            target -= weight;
        }
        weights.len() - 1
    }

    /// A Pareto draw with scale `x_min` and shape `alpha`: the heavy tail of "most users a few, some thousands".
    pub(crate) fn pareto(&mut self, x_min: f64, alpha: f64) -> f64 {
        x_min * (1.0 - self.unit()).powf(-1.0 / alpha)
    }

    /// A geometric count (0, 1, 2, ...) with the given mean.
    pub(crate) fn geometric(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        let p = 1.0 / (1.0 + mean);
        ((1.0 - self.unit()).ln() / (1.0 - p).ln()).floor() as u64
    }
}

/// Greatest common divisor, for picking a stride that visits distinct elements.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, 1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::stream(7, 1, 2, 3).next_u64(), Rng::stream(7, 1, 2, 4).next_u64());
        assert_ne!(Rng::stream(7, 1, 2, 3).next_u64(), Rng::stream(8, 1, 2, 3).next_u64());
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid(1, 2, 3, 4);
        assert_eq!(id[6] >> 4, 4);
        assert_eq!(id[8] >> 6, 0b10);
    }

    #[test]
    fn injective_values_do_not_collide() {
        let mut values: Vec<u64> = (0..100_000).map(|i| injective(3, 9, i)).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), 100_000);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::from_seed(42);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let r = rng.range(-3, 3);
            assert!((-3..=3).contains(&r));
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.pareto(1.0, 1.2) >= 1.0);
        }
        assert_eq!(rng.below(0), 0);
    }
}
