//! The lengths of the views a verdict holds for (see [`Lengths`]).

use super::Machine;

/// The lengths of the views a verdict holds for, besides the bytes under its read mask.
///
/// The bytes a run read decide its path, so another view with those bytes in the same places
/// takes the same path; it then gets the same verdict if each read lies inside it as well,
/// and, where the run loaded `len`, if it has the same wire length. The same L2 length keeps
/// the places (an offset past it is in the L3 part); an L3 part that reaches the last byte
/// the run read from it keeps every read inside. So the packets of a TCP flow, whose lengths
/// change from segment to segment, share a verdict on their addresses and ports. A run whose
/// verdict depends on the lengths (`Machine::lengths_matter`) holds for its own lengths only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lengths {
    pub l2_len: u32,
    /// The L3 lengths it holds for: `l3_min..=l3_max`.
    pub l3_min: u32,
    pub l3_max: u32,
    /// The wire length it holds for, under `wire_mask` (all ones, or none where `len` was not
    /// read).
    pub wire_len: u32,
    pub wire_mask: u32,
}

impl Lengths {
    /// The lengths the verdict of `machine`'s finished run on a view of these lengths holds
    /// for.
    #[inline(always)]
    pub fn of(machine: &Machine, l2_len: u32, l3_len: u32, wire_len: u32) -> Self {
        if machine.lengths_matter {
            return Lengths {
                l2_len,
                l3_min: l3_len,
                l3_max: l3_len,
                wire_len,
                wire_mask: u32::MAX,
            };
        }
        Lengths {
            l2_len,
            // An L3 part reaching the last byte the run read from it.
            l3_min: machine.reach.saturating_sub(l2_len),
            l3_max: u32::MAX,
            wire_len: 0,
            wire_mask: 0,
        }
    }

    /// Whether a view of these lengths is one the verdict holds for (its bytes under the read
    /// mask being the same).
    #[inline(always)]
    pub fn admit(&self, l2_len: u32, l3_len: u32, wire_len: u32) -> bool {
        l2_len == self.l2_len
            && self.l3_min <= l3_len
            && l3_len <= self.l3_max
            && wire_len & self.wire_mask == self.wire_len
    }
}
