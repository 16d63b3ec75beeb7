//! Record layer tests: round trips, tampering, replay, reordering, limits, sticky errors.

use super::*;
use crate::tunnel::{EndReason, ErrorCode};

const KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];
const IV: [u8; IV_LEN] = [0x24; IV_LEN];

fn pair() -> (RecordSealer, RecordOpener) {
    (
        RecordSealer::new(&KEY, &IV).unwrap(),
        RecordOpener::new(&KEY, &IV).unwrap(),
    )
}

fn sealed_data(sealer: &mut RecordSealer, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sealer.seal_data(data, &mut out).unwrap();
    out
}

fn open_owned(
    opener: &mut RecordOpener,
    buf: &mut [u8],
) -> Result<Option<(Vec<u8>, usize)>, Error> {
    Ok(opener
        .open_in_place(buf)?
        .map(|(record, used)| match record {
            Record::Data(data) => (data.to_vec(), used),
            Record::Control(control) => panic!("unexpected control {control:?}"),
        }))
}

#[test]
fn seal_in_place_writes_one_frame() {
    let (mut sealer, mut opener) = pair();
    let mut frame = [0u8; 64];
    frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 5].copy_from_slice(b"hello");
    let len = sealer.seal_in_place(&mut frame, 5).unwrap();
    assert_eq!(len, OVERHEAD + 5);
    assert_eq!(frame[..HEADER_LEN], [0, 0, 0, 1 + 5 + 16]);
    assert_ne!(&frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 5], b"hello");
    assert_eq!(RecordOpener::frame_len(&frame[..3]), Ok(None));
    assert_eq!(RecordOpener::frame_len(&frame), Ok(Some(len)));
    let (record, used) = opener.open_in_place(&mut frame).unwrap().unwrap();
    assert_eq!((record, used), (Record::Data(b"hello"), len));
    assert_eq!((sealer.records_sealed(), opener.records_opened()), (1, 1));
}

#[test]
fn seal_refuses_bad_arguments_without_spending_a_counter() {
    let (mut sealer, _) = pair();
    let mut small = [0u8; OVERHEAD + 4];
    assert!(matches!(
        sealer.seal_in_place(&mut small, 5),
        Err(Error::Misuse(_))
    ));
    let mut big = vec![0u8; MAX_RECORD_LEN + 1];
    assert!(matches!(
        sealer.seal_in_place(&mut big, MAX_PLAINTEXT + 1),
        Err(Error::TooLarge { .. })
    ));
    let mut out = b"keep".to_vec();
    let long = Control::Error {
        code: ErrorCode::Internal,
        message: "x".repeat(1025),
    };
    assert!(matches!(
        sealer.seal_control(&long, &mut out),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(out, b"keep");
    assert_eq!(sealer.records_sealed(), 0);
    assert_eq!(
        sealer.seal_in_place(&mut big, MAX_PLAINTEXT),
        Ok(MAX_RECORD_LEN)
    );
}

#[test]
fn controls_round_trip_and_largest_record_opens() {
    let (mut sealer, mut opener) = pair();
    let controls = [
        Control::Ack { received: u64::MAX },
        Control::Ping(1),
        Control::Pong(2),
        Control::Close,
        Control::EndSession,
        Control::error(ErrorCode::TargetUnreachable, "connection refused"),
        Control::error(ErrorCode::Internal, &"é".repeat(600)),
        Control::SessionEnded(EndReason::MaxDuration),
        Control::SessionEnded(EndReason::EndedByAdministrator),
        Control::SessionEnded(EndReason::Unknown(9)),
    ];
    let mut stream = Vec::new();
    for control in &controls {
        sealer.seal_control(control, &mut stream).unwrap();
    }
    sealer
        .seal_data(&vec![7; MAX_PLAINTEXT], &mut stream)
        .unwrap();
    let mut offset = 0;
    for control in &controls {
        let (record, used) = opener
            .open_in_place(&mut stream[offset..])
            .unwrap()
            .unwrap();
        assert_eq!(record, Record::Control(control.clone()));
        offset += used;
    }
    let (record, used) = opener
        .open_in_place(&mut stream[offset..])
        .unwrap()
        .unwrap();
    assert_eq!(record, Record::Data(&[7; MAX_PLAINTEXT]));
    assert_eq!(offset + used, stream.len());
    let Control::Error { message, .. } = &controls[6] else {
        unreachable!()
    };
    assert_eq!(message.len(), 1024, "cut at a character boundary");
}

#[test]
fn every_flipped_bit_fails() {
    let (mut sealer, _) = pair();
    let frame = sealed_data(&mut sealer, b"attack at dawn");
    for bit in 0..frame.len() * 8 {
        let mut forged = frame.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        forged.resize(frame.len() + MAX_RECORD_LEN, 0);
        let (_, mut opener) = pair();
        assert!(
            opener.open_in_place(&mut forged).is_err(),
            "bit {bit} accepted"
        );
    }
}

#[test]
fn header_out_of_bounds_fails_before_the_body() {
    let (_, mut opener) = pair();
    let too_large = ((1 + MAX_PLAINTEXT + TAG_LEN + 1) as u32).to_be_bytes();
    assert!(matches!(
        opener.open_in_place(&mut too_large.clone()),
        Err(Error::TooLarge { .. })
    ));
    let (_, mut opener) = pair();
    let too_small = (TAG_LEN as u32).to_be_bytes();
    assert!(matches!(
        opener.open_in_place(&mut too_small.clone()),
        Err(Error::Invalid { .. })
    ));
    let (_, mut opener) = pair();
    assert_eq!(opener.open_in_place(&mut [0, 0, 0]), Ok(None));
}

#[test]
fn truncated_records_wait_or_fail() {
    let (mut sealer, mut opener) = pair();
    let frame = sealed_data(&mut sealer, b"0123456789");
    for cut in 0..frame.len() {
        assert_eq!(
            open_owned(&mut opener, &mut frame[..cut].to_vec()),
            Ok(None)
        );
    }
    // Re-framed to drop the last byte: authentication fails.
    let mut shortened = frame[..frame.len() - 1].to_vec();
    shortened[3] -= 1;
    assert_eq!(
        open_owned(&mut opener, &mut shortened),
        Err(Error::DecryptFailed)
    );
}

#[test]
fn replayed_and_reordered_records_fail() {
    let (mut sealer, _) = pair();
    let first = sealed_data(&mut sealer, b"first");
    let second = sealed_data(&mut sealer, b"second");

    let (_, mut opener) = pair();
    assert_eq!(
        open_owned(&mut opener, &mut first.clone()),
        Ok(Some((b"first".to_vec(), 26)))
    );
    assert_eq!(
        open_owned(&mut opener, &mut first.clone()),
        Err(Error::DecryptFailed)
    );

    let (_, mut opener) = pair();
    assert_eq!(
        open_owned(&mut opener, &mut second.clone()),
        Err(Error::DecryptFailed)
    );
}

#[test]
fn errors_stick() {
    let (mut sealer, mut opener) = pair();
    let good = sealed_data(&mut sealer, b"good");
    let mut bad = good.clone();
    bad[HEADER_LEN] ^= 1;
    assert_eq!(open_owned(&mut opener, &mut bad), Err(Error::DecryptFailed));
    assert_eq!(opener.failure(), Some(&Error::DecryptFailed));
    assert_eq!(
        open_owned(&mut opener, &mut good.clone()),
        Err(Error::DecryptFailed)
    );
    assert_eq!(open_owned(&mut opener, &mut []), Err(Error::DecryptFailed));
}

#[test]
fn counters_are_limited_in_both_directions() {
    let (mut sealer, mut opener) = pair();
    sealer.set_record_limit(2);
    opener.set_record_limit(1);
    assert_eq!((sealer.record_limit(), opener.record_limit()), (2, 1));
    let mut stream = Vec::new();
    sealer.seal_data(b"a", &mut stream).unwrap();
    sealer.seal_control(&Control::Ping(0), &mut stream).unwrap();
    assert_eq!(
        sealer.seal_data(b"c", &mut stream),
        Err(Error::CounterExhausted)
    );
    assert_eq!(
        sealer.seal_control(&Control::Close, &mut stream),
        Err(Error::CounterExhausted)
    );
    let mut frame = [0u8; OVERHEAD];
    assert_eq!(
        sealer.seal_in_place(&mut frame, 0),
        Err(Error::CounterExhausted)
    );
    let used = opener.open_in_place(&mut stream).unwrap().unwrap().1;
    assert_eq!(
        opener.open_in_place(&mut stream[used..]),
        Err(Error::CounterExhausted)
    );
}

#[test]
fn bad_inner_plaintext_is_refused() {
    let cases: [(u8, &[u8]); 9] = [
        (0x08, b""),
        (content_type::SESSION_ENDED, b""),
        (content_type::SESSION_ENDED, &[0, 1, 0]),
        (0xff, b"x"),
        (content_type::ACK, &[0; 7]),
        (content_type::PING, &[0; 9]),
        (content_type::CLOSE, &[0]),
        (content_type::ERROR, &[0, 1, 0, 2, b'o']),
        (content_type::ERROR, &[0, 1, 0, 1, 0xff]),
    ];
    for (content, body) in cases {
        let (mut sealer, mut opener) = pair();
        let mut frame = vec![0u8; OVERHEAD + body.len()];
        frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + body.len()].copy_from_slice(body);
        sealer.seal_frame(content, &mut frame).unwrap();
        assert!(
            opener.open_in_place(&mut frame).is_err(),
            "{content:#x} {body:?}"
        );
    }
    let mut long = vec![0u8, 1, 0x04, 0x01];
    long.extend_from_slice(&[b'a'; 1025]);
    let (mut sealer, mut opener) = pair();
    let mut frame = vec![0u8; OVERHEAD + long.len()];
    frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + long.len()].copy_from_slice(&long);
    sealer.seal_frame(content_type::ERROR, &mut frame).unwrap();
    assert!(matches!(
        opener.open_in_place(&mut frame),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn nonce_is_the_iv_xor_the_counter() {
    let key = DirectionKey::new(&KEY, &[0xff; IV_LEN]).unwrap();
    let nonce = key.nonce(0x0102_0304_0506_0708);
    assert_eq!(
        nonce.as_ref(),
        &[
            0xff, 0xff, 0xff, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7
        ]
    );
}
