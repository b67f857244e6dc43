//! Symbolizing kernel text addresses (drop locations) with `/proc/kallsyms`.

/// Sorted (address, symbol) pairs of the kernel's text.
#[derive(Default)]
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`. Without root the addresses read as 0, and locations stay numeric.
    pub fn load() -> Kallsyms {
        std::fs::read_to_string("/proc/kallsyms")
            .map(|text| Kallsyms::parse(&text))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Kallsyms {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
                let kind = fields.next()?;
                let name = fields.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        symbols.sort_unstable();
        Kallsyms { symbols }
    }

    /// `function+0xoffset`, or the bare address when it cannot be placed.
    pub fn symbolize(&self, addr: u64) -> String {
        let index = self.symbols.partition_point(|(a, _)| *a <= addr);
        match index.checked_sub(1).map(|i| &self.symbols[i]) {
            Some((start, name)) => format!("{name}+0x{:x}", addr - start),
            None => format!("0x{addr:x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_an_address_inside_the_preceding_function() {
        let syms = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81a00000 t nf_hook_slow\nffffffff81a00400 T ip_rcv\n0000000000000000 D data\n",
        );
        assert_eq!(syms.symbolize(0xffffffff81a00123), "nf_hook_slow+0x123");
        assert_eq!(syms.symbolize(0xffffffff81a00400), "ip_rcv+0x0");
        assert_eq!(syms.symbolize(0x10), "0x10");
    }
}
