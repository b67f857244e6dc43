//! The verifier's words, made short: a program the kernel refuses costs its observation point,
//! and the user (and `tracer doctor`) is told why in a line, not a page of log.

use aya::programs::ProgramError;

/// The error of a program that could not be loaded: the syscall's error and, where the
/// verifier refused it, its complaint.
pub fn describe(error: &ProgramError) -> String {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let complaint = complaint(&verifier_log.to_string());
            if complaint.is_empty() {
                format!("the kernel refused it ({io_error})")
            } else {
                format!("the verifier refused it ({io_error}): {complaint}")
            }
        }
        other => format!("{other:#}"),
    }
}

/// The verifier's complaint: the last lines of its log that are neither an instruction, a
/// source line, a register state nor the closing statistics. Usually two: what was wrong
/// ("invalid access to map value, value_size=128 off=129 size=1") and why ("R1 max value is
/// outside of the allowed memory range").
pub fn complaint(log: &str) -> String {
    let words: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_noise(line))
        .collect();
    words[words.len().saturating_sub(2)..].join(" / ")
}

fn is_noise(line: &str) -> bool {
    let instruction = line
        .split_once(':')
        .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    instruction
        || line.starts_with(';')
        || line.starts_with("processed ")
        || line.starts_with("verification time")
        || line.starts_with("stack depth")
        || line.starts_with("from ")
        || line.starts_with("func#")
        || line.starts_with("last_idx")
        || line.starts_with("regs=")
        || line.starts_with("parent ")
        || line.starts_with("mark_precise")
        || line.starts_with("Live regs")
        || line.starts_with("Validating ")
        || line.starts_with("frame")
        || line.contains("; R0")
        || line.contains("R10=fp0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_complaint_is_the_last_two_lines_that_say_something() {
        let log = "func#0 @0\n0: R1=ctx() R10=fp0\n0: (bf) r6 = r1\n; let x = 1; @ parse.rs:201\n\
                   412: (71) r1 = *(u8 *)(r2 +13)\n\
                   invalid access to map value, value_size=128 off=129 size=1\n\
                   R1 max value is outside of the allowed memory range\n\
                   processed 3012 insns (limit 1000000) max_states_per_insn 4\n";
        assert_eq!(
            complaint(log),
            "invalid access to map value, value_size=128 off=129 size=1 / \
             R1 max value is outside of the allowed memory range"
        );
    }

    #[test]
    fn a_one_line_complaint_stays_one_line() {
        let log = "func 'consume_skb' doesn't have 2-th argument\n\
                   processed 1 insns (limit 1000000)\n";
        assert_eq!(
            complaint(log),
            "func 'consume_skb' doesn't have 2-th argument"
        );
        assert_eq!(complaint(""), "");
    }
}
