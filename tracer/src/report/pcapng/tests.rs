use super::*;

/// (block type, body) of every block, checking both length fields and the 4-byte alignment.
fn blocks(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (kind, total) = (word(at), word(at + 4) as usize);
        assert_eq!(total % 4, 0, "block at {at} not aligned");
        assert_eq!(
            word(at + total - 4),
            total as u32,
            "trailing length at {at}"
        );
        out.push((kind, bytes[at + 8..at + total - 4].to_vec()));
        at += total;
    }
    out
}

/// The (code, value) options that start at `at` in `body`.
fn options(body: &[u8], mut at: usize) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let code = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = u16::from_le_bytes([body[at + 2], body[at + 3]]) as usize;
        if code == OPT_END {
            return out;
        }
        out.push((code, body[at + 4..at + 4 + len].to_vec()));
        at += 4 + len.div_ceil(4) * 4;
    }
}

#[test]
fn a_file_has_a_section_interfaces_and_packets_with_their_options() {
    let mut writer = Writer::new(Vec::new(), "tracer test", "filter: tcp").unwrap();
    let eth = Interface {
        link: LinkType::Ethernet,
        snaplen: 192,
        name: "b/vb:xdp",
        description: "xdp on vb in b",
    };
    let raw = Interface {
        link: LinkType::Raw,
        ..eth
    };
    assert_eq!(writer.interface(&eth).unwrap(), 0);
    assert_eq!(writer.interface(&raw).unwrap(), 1);
    let comments = ["hook xdp".to_string(), "fate: dropped".to_string()];
    writer
        .packet(&Packet {
            interface: 1,
            ts_ns: 0x1_0000_0002,
            data: &[0x45, 0, 0, 20, 1],
            orig_len: 60,
            direction: Direction::Inbound,
            comments: &comments,
            verdict: Some(Verdict::Xdp(1)),
        })
        .unwrap();
    let bytes = writer.finish().unwrap();

    let blocks = blocks(&bytes);
    let kinds: Vec<u32> = blocks.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [SHB, IDB, IDB, EPB]);
    let shb = &blocks[0].1;
    assert_eq!(&shb[..4], &BYTE_ORDER_MAGIC.to_le_bytes());
    assert_eq!(
        options(shb, 16),
        [
            (SHB_USERAPPL, b"tracer test".to_vec()),
            (OPT_COMMENT, b"filter: tcp".to_vec())
        ]
    );
    assert_eq!(&blocks[2].1[..2], &101u16.to_le_bytes());

    let epb = &blocks[3].1;
    let word = |at: usize| u32::from_le_bytes(epb[at..at + 4].try_into().unwrap());
    assert_eq!((word(0), word(4), word(8)), (1, 1, 2));
    assert_eq!(
        (word(12), word(16)),
        (5, 60),
        "captured and original length"
    );
    assert_eq!(&epb[20..25], &[0x45, 0, 0, 20, 1]);
    let mut verdict = vec![2u8];
    verdict.extend(1u64.to_le_bytes());
    assert_eq!(
        options(epb, 28),
        [
            (OPT_COMMENT, b"hook xdp".to_vec()),
            (OPT_COMMENT, b"fate: dropped".to_vec()),
            (EPB_FLAGS, 1u32.to_le_bytes().to_vec()),
            (EPB_VERDICT, verdict),
        ]
    );
}
