//! Micro-benchmarks of the strict chunked decoder (`ChunkedDecoder::step`) over a body that
//! is already in memory: 64 KiB in 16 chunks of 4 KiB (large upstream chunks, framing cost
//! amortised) and 1 KiB in 16 chunks of 64 bytes (many small chunks, framing dominates).
//! Each iteration decodes the whole body with a fresh decoder, as the relay does per
//! response, and only walks the payload ranges (no copy). Throughput is payload bytes per
//! second. The encoded bodies are built and verified before the timed loops.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ringway::http::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder, CHUNK_END, LAST_CHUNK};

/// Same limits as the proxy's response relay: 4 KiB lines, 64 KiB of trailers.
fn decoder() -> ChunkedDecoder {
    ChunkedDecoder::new(4096, 64 * 1024)
}

/// `chunks` chunks of `size` payload bytes each, then the last chunk.
fn encoded(chunks: usize, size: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..chunks {
        put_chunk_header(size, &mut out);
        out.extend((0..size).map(|j| b'a' + ((i + j) % 26) as u8));
        out.extend_from_slice(CHUNK_END);
    }
    out.extend_from_slice(LAST_CHUNK);
    out.to_vec()
}

/// Decodes the whole of `input`; returns the payload bytes seen, or None on an error or
/// an incomplete body.
fn decode(input: &[u8]) -> Option<usize> {
    let mut dec = decoder();
    let mut at = 0;
    let mut payload = 0;
    loop {
        match dec.step(&input[at..]).ok()? {
            ChunkEvent::Data { start, end } => {
                payload += black_box(&input[at + start..at + end]).len();
                at += end;
            }
            ChunkEvent::Trailer { consumed, .. } => at += consumed,
            ChunkEvent::NeedMore { .. } => return None,
            ChunkEvent::Done { consumed } => {
                return (at + consumed == input.len()).then_some(payload);
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunked_decode");
    for (name, chunks, size) in [
        ("64KiB_in_4KiB_chunks", 16, 4096),
        ("1KiB_in_64B_chunks", 16, 64),
    ] {
        let body = encoded(chunks, size);
        let payload = chunks * size;
        assert_eq!(decode(&body), Some(payload), "bench body decodes");
        g.throughput(Throughput::Bytes(payload as u64));
        g.bench_function(name, |b| b.iter(|| black_box(decode(black_box(&body)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
