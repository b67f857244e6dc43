//! What the programs need to know of the running kernel's structs, from its BTF.
//!
//! aya's Rust eBPF has no CO-RE relocations, and `struct sk_buff` differs between kernels and
//! configs: the offsets are looked up here at load time and handed to the programs as a global.

use std::collections::HashMap;

use btf_rs::{Btf, Type};
use tracer_common::config::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read the kernel's BTF at {VMLINUX_BTF} ({0}); the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    Unreadable(String),
    #[error("the kernel's BTF has no field {0}, which the tracer needs")]
    MissingField(String),
}

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load() -> Result<KernelBtf, BtfError> {
        Btf::from_file(VMLINUX_BTF)
            .map(|btf| KernelBtf { btf })
            .map_err(|e| BtfError::Unreadable(e.to_string()))
    }

    /// Offsets of the fields the kernel programs read. A field that must exist and does not is
    /// an error; optional ones (XDP's device, a socket's addresses, netfilter's state) stay
    /// `u32::MAX` and the programs report 0 instead.
    pub fn offsets(&self) -> Result<KernelOffsets, BtfError> {
        let need = |strukt: &str, path: &str| {
            self.field_offset(strukt, path)
                .ok_or_else(|| BtfError::MissingField(format!("{strukt}.{path}")))
        };
        let optional =
            |strukt: &str, path: &str| self.field_offset(strukt, path).unwrap_or(u32::MAX);
        Ok(KernelOffsets {
            skb_len: need("sk_buff", "len")?,
            skb_head: need("sk_buff", "head")?,
            skb_data: need("sk_buff", "data")?,
            skb_data_len: optional("sk_buff", "data_len"),
            skb_end: need("sk_buff", "end")?,
            skb_network_header: need("sk_buff", "network_header")?,
            skb_mac_header: need("sk_buff", "mac_header")?,
            skb_protocol: need("sk_buff", "protocol")?,
            skb_mark: need("sk_buff", "mark")?,
            skb_dev: need("sk_buff", "dev")?,
            skb_sk: optional("sk_buff", "sk"),
            dev_ifindex: need("net_device", "ifindex")?,
            dev_nd_net: need("net_device", "nd_net.net")?,
            net_inum: need("net", "ns.inum")?,
            shinfo_gso_segs: optional("skb_shared_info", "gso_segs"),
            shinfo_dataref: optional("skb_shared_info", "dataref"),
            xdp_rxq: optional("xdp_buff", "rxq"),
            rxq_dev: optional("xdp_rxq_info", "dev"),
            sk_net: optional("sock_common", "skc_net.net"),
            sk_family: optional("sock_common", "skc_family"),
            sk_daddr: optional("sock_common", "skc_daddr"),
            sk_rcv_saddr: optional("sock_common", "skc_rcv_saddr"),
            sk_dport: optional("sock_common", "skc_dport"),
            sk_num: optional("sock_common", "skc_num"),
            sk_v6_daddr: optional("sock_common", "skc_v6_daddr"),
            sk_v6_rcv_saddr: optional("sock_common", "skc_v6_rcv_saddr"),
            nf_state_hook: optional("nf_hook_state", "hook"),
            nf_state_pf: optional("nf_hook_state", "pf"),
            nf_state_in: optional("nf_hook_state", "in"),
            nf_state_out: optional("nf_hook_state", "out"),
            nf_state_net: optional("nf_hook_state", "net"),
            net_nf_hooks_ipv4: optional("net", "nf.hooks_ipv4"),
            net_nf_hooks_ipv6: optional("net", "nf.hooks_ipv6"),
            nf_entries_num: optional("nf_hook_entries", "num_hook_entries"),
            task_nsproxy: optional("task_struct", "nsproxy"),
            nsproxy_net_ns: optional("nsproxy", "net_ns"),
            fl4_proto: optional("flowi4", "__fl_common.flowic_proto"),
            fl4_saddr: optional("flowi4", "saddr"),
            fl4_daddr: optional("flowi4", "daddr"),
            fl4_sport: optional("flowi4", "uli.ports.sport"),
            fl4_dport: optional("flowi4", "uli.ports.dport"),
            nhc_dev: optional("fib_nh_common", "nhc_dev"),
        })
    }

    /// Byte offset of `path` (dot-separated members) inside `struct strukt`, looking through
    /// anonymous structs and unions as C does.
    pub fn field_offset(&self, strukt: &str, path: &str) -> Option<u32> {
        let mut ty = self
            .btf
            .resolve_types_by_name(strukt)
            .ok()?
            .into_iter()
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))?;
        let mut offset = 0;
        for name in path.split('.') {
            let (member_offset, member_ty) = self.find_member(&ty, name)?;
            offset += member_offset;
            ty = member_ty;
        }
        Some(offset)
    }

    /// Finds member `name` in a struct or union type: (byte offset, the member's type with
    /// typedefs and qualifiers peeled off).
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u32, Type)> {
        let (Type::Struct(s) | Type::Union(s)) = ty else {
            return None;
        };
        for member in &s.members {
            let member_name = self.btf.resolve_name(member).unwrap_or_default();
            let Ok(member_ty) = self.btf.resolve_chained_type(member) else {
                continue;
            };
            let member_ty = self.peel(member_ty);
            if member_name == name {
                return Some((member.bit_offset() / 8, member_ty));
            }
            if member_name.is_empty() {
                if let Some((inner, found)) = self.find_member(&member_ty, name) {
                    return Some((member.bit_offset() / 8 + inner, found));
                }
            }
        }
        None
    }

    fn peel(&self, mut ty: Type) -> Type {
        while let Type::Typedef(_)
        | Type::Const(_)
        | Type::Volatile(_)
        | Type::Restrict(_)
        | Type::TypeTag(_) = ty
        {
            let Some(next) = ty
                .as_btf_type()
                .and_then(|t| self.btf.resolve_chained_type(t).ok())
            else {
                break;
            };
            ty = next;
        }
        ty
    }

    /// `enum skb_drop_reason` of this kernel: value -> name without the `SKB_DROP_REASON_`
    /// prefix. The values differ between kernels, so they are never hard-coded.
    pub fn drop_reasons(&self) -> HashMap<u32, String> {
        self.enum_names("skb_drop_reason", "SKB_DROP_REASON_")
    }

    /// `enum sk_rst_reason` (why TCP sent a reset, 6.10+), prefix `SK_RST_REASON_` removed.
    pub fn reset_reasons(&self) -> HashMap<u32, String> {
        self.enum_names("sk_rst_reason", "SK_RST_REASON_")
    }

    /// Whether this kernel's BTF knows a type called `name` (a struct, a tracepoint's
    /// `btf_trace_*` typedef, ...): how `tracer doctor` tells what the kernel has.
    pub fn has_type(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .is_ok_and(|types| !types.is_empty())
    }

    /// How many arguments tracepoint `name` passes to a `tp_btf` program on this kernel, from
    /// its `btf_trace_<name>` typedef (a pointer to a function whose first parameter is the
    /// tracepoint's private data, not an argument). `None` when the kernel has no such
    /// tracepoint. Arguments come and go between versions (consume_skb's location, 6.3;
    /// kfree_skb's rx_sk, 6.12), and a program that reads one the kernel lacks is refused.
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let typedef = self
            .btf
            .resolve_types_by_name(&format!("btf_trace_{name}"))
            .ok()?
            .into_iter()
            .find(|t| matches!(t, Type::Typedef(_)))?;
        let mut ty = self.peel(typedef);
        if let Type::Ptr(ptr) = &ty {
            ty = self.peel(self.btf.resolve_chained_type(ptr).ok()?);
        }
        match ty {
            Type::FuncProto(proto) => Some(proto.parameters.len().saturating_sub(1)),
            _ => None,
        }
    }

    /// Whether enum `name` has a member called `member`.
    pub fn has_enum_member(&self, name: &str, member: &str) -> bool {
        self.enum_names(name, "").values().any(|m| m == member)
    }

    fn enum_names(&self, name: &str, prefix: &str) -> HashMap<u32, String> {
        let mut names = HashMap::new();
        for ty in self.btf.resolve_types_by_name(name).unwrap_or_default() {
            if let Type::Enum(e) = ty {
                for member in &e.members {
                    if let Ok(name) = self.btf.resolve_name(member) {
                        let short = name.strip_prefix(prefix).unwrap_or(&name);
                        names.insert(member.val(), short.to_string());
                    }
                }
            }
        }
        names
    }
}
