//! How many functions each netfilter hook has in a namespace, as the census program returns
//! them: one 32-bit word, three bits a (family, hook) and a bit saying the count was read.
//!
//! A hook where nothing is registered is skipped by the kernel (`nf_hook()` finds no
//! entries), so nothing there can drop or change a packet; a link of the tracer's makes the
//! kernel run netfilter there for every packet. The census lets the tracer link only where
//! netfilter runs anyway.

/// Families in the word: `NFPROTO_IPV4`, then `NFPROTO_IPV6`.
pub const FAMILIES: [u8; 2] = [2, 10];
/// Hooks of each family: `NF_INET_PRE_ROUTING` .. `NF_INET_POST_ROUTING`.
pub const HOOKS: u8 = 5;
/// Set when every count was read; a word without it says nothing.
pub const KNOWN: u32 = 1 << 31;
/// A count's bits: more than this many functions reads as this many.
pub const SATURATED: u16 = 0b111;
const BITS: u32 = 3;

/// Where a (family index, hook) count sits in the word.
const fn shift(family_index: u32, hook: u32) -> u32 {
    (family_index * HOOKS as u32 + hook) * BITS
}

/// The word with `count` functions at `hook` of the family at `family_index` (0 for IPv4,
/// 1 for IPv6) added.
pub const fn with_count(word: u32, family_index: u32, hook: u32, count: u16) -> u32 {
    let count = if count > SATURATED { SATURATED } else { count };
    word | (count as u32) << shift(family_index, hook)
}

/// The functions registered at `hook` of family `pf` (`NFPROTO_*`), `None` when the word was
/// not read or the family is not one the census counts.
pub fn count(word: u32, pf: u32, hook: u32) -> Option<u16> {
    let family_index = FAMILIES.iter().position(|f| *f as u32 == pf)? as u32;
    if word & KNOWN == 0 || hook >= HOOKS as u32 {
        return None;
    }
    Some((word >> shift(family_index, hook) & SATURATED as u32) as u16)
}

const _: () = assert!(shift(1, HOOKS as u32 - 1) + BITS <= 31);

/// A (family, hook)'s bit in a word of hooks (`NF_FIRST_ONLY`); `None` for a family or hook
/// the census does not count.
pub fn hook_bit(pf: u32, hook: u32) -> Option<u32> {
    // A match, not a search of `FAMILIES`: kernel programs call it too.
    let family_index = match pf {
        2 => 0,
        10 => 1,
        _ => return None,
    };
    (hook < HOOKS as u32).then_some(1 << (family_index * HOOKS as u32 + hook))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hook_has_a_bit_of_its_own() {
        let mut all = 0u32;
        for pf in FAMILIES {
            for hook in 0..HOOKS as u32 {
                let bit = hook_bit(pf as u32, hook).expect("a counted family and hook");
                assert_eq!(bit.count_ones(), 1);
                assert_eq!(all & bit, 0, "{pf} {hook} shares a bit");
                all |= bit;
            }
        }
        assert_eq!(hook_bit(7, 0), None);
        assert_eq!(hook_bit(2, HOOKS as u32), None);
    }

    #[test]
    fn each_hook_reads_back_its_own_count() {
        let mut word = KNOWN;
        for (i, _) in FAMILIES.iter().enumerate() {
            for hook in 0..HOOKS as u32 {
                word = with_count(word, i as u32, hook, (i as u16 * 5 + hook as u16) % 8);
            }
        }
        for (i, pf) in FAMILIES.iter().enumerate() {
            for hook in 0..HOOKS as u32 {
                let want = (i as u16 * 5 + hook as u16) % 8;
                assert_eq!(count(word, *pf as u32, hook), Some(want), "{pf} {hook}");
            }
        }
    }

    #[test]
    fn many_functions_read_as_some_not_as_none() {
        let word = with_count(KNOWN, 1, 4, 40);
        assert_eq!(count(word, 10, 4), Some(SATURATED));
        assert_eq!(count(word, 10, 3), Some(0));
        assert_eq!(count(word, 2, 4), Some(0));
    }

    #[test]
    fn an_unread_word_or_unknown_family_says_nothing() {
        assert_eq!(count(with_count(0, 0, 0, 3), 2, 0), None);
        assert_eq!(count(KNOWN, 7, 0), None);
        assert_eq!(count(KNOWN, 2, 5), None);
    }
}
