//! A small fixed-size bit set of field values.

/// The values of one cron field, as bits. Holds up to 256 consecutive values starting at
/// `base`: enough for the year field (1970-2199, 230 values) as well as the small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueSet {
    base: u32,
    bits: [u64; 4],
}

impl ValueSet {
    pub(crate) const fn empty(base: u32) -> Self {
        Self { base, bits: [0; 4] }
    }

    /// Callers pass values already checked against the field's range.
    pub(crate) fn insert(&mut self, value: u32) {
        if let Some(i) = self.index(value) {
            self.bits[i / 64] |= 1 << (i % 64);
        }
    }

    pub(crate) fn contains(&self, value: u32) -> bool {
        self.index(value)
            .is_some_and(|i| self.bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// The smallest member `>= value`.
    pub(crate) fn next_from(&self, value: u32) -> Option<u32> {
        let mut i = value.saturating_sub(self.base) as usize;
        while i < 256 {
            let word = self.bits[i / 64] >> (i % 64);
            if word != 0 {
                let found = u32::try_from(i).ok()? + word.trailing_zeros();
                return Some(self.base + found);
            }
            // Nothing left in this word: jump to the start of the next one.
            i = (i / 64 + 1) * 64;
        }
        None
    }

    fn index(&self, value: u32) -> Option<usize> {
        let i = value.checked_sub(self.base)? as usize;
        (i < 256).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::ValueSet;

    #[test]
    fn next_from_walks_words() {
        let mut set = ValueSet::empty(1970);
        for v in [1970, 2033, 2100, 2199] {
            set.insert(v);
        }
        assert!(set.contains(2100));
        assert!(!set.contains(2101));
        assert!(!set.contains(1969));
        assert_eq!(set.next_from(1900), Some(1970));
        assert_eq!(set.next_from(1971), Some(2033));
        assert_eq!(set.next_from(2034), Some(2100));
        assert_eq!(set.next_from(2101), Some(2199));
        assert_eq!(set.next_from(2200), None);
    }
}
