//! Colours for the text output, on a terminal only (and never with `NO_COLOR` set).

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Ansi,
}

impl Paint {
    /// ANSI colours when stdout is a terminal and `NO_COLOR` is unset (no-color.org).
    pub fn for_stdout() -> Paint {
        if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Paint::Ansi
        } else {
            Paint::Plain
        }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        match self {
            Paint::Plain => text.to_string(),
            Paint::Ansi => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    /// Where tcpdump's tap sits.
    pub fn tap(self, text: &str) -> String {
        self.wrap("36", text)
    }

    /// A fate: red for a drop, green for a packet that made it, yellow when unknown.
    pub fn fate(self, kind: &str, text: &str) -> String {
        match kind {
            "dropped" => self.wrap("1;31", text),
            "unknown" => self.wrap("33", text),
            "copy" => text.to_string(),
            _ => self.wrap("32", text),
        }
    }
}
