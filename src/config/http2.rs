//! `[http2]`: the settings ringway serves HTTP/2 clients with, each one a defence whose
//! default and the attack it stops are in docs/http2.md.

use serde::{Deserialize, Serialize};

use super::defaults::http2 as d;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_
    /// STREAMS); one more is refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// Bytes of request body a client may send on one stream before ringway reads them
    /// (the stream's flow-control window).
    pub initial_stream_window: u32,
    /// Bytes of request body a client may send on one connection, all streams together,
    /// before ringway reads them.
    pub initial_connection_window: u32,
    /// Largest frame payload ringway accepts (SETTINGS_MAX_FRAME_SIZE).
    pub max_frame_size: u32,
    /// HPACK dynamic table the client's header blocks may use (SETTINGS_HEADER_TABLE_SIZE).
    pub header_table_size: u32,
    /// Response bytes queued per stream for a client that has not opened its window yet.
    pub max_send_buffer: usize,
    /// Streams a client may reset per second on one connection; one more ends the
    /// connection with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    pub max_resets_per_second: u32,
    /// Frames per second per connection that cost work without carrying a request.
    pub flood: FloodConfig,
}

/// `[http2.flood]`: per connection and per second, how many of each of these frames a
/// client may send; one more ends the connection with GOAWAY ENHANCE_YOUR_CALM.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    pub settings: u32,
    /// PING frames that are not acknowledgements.
    pub ping: u32,
    pub priority: u32,
    pub rst_stream: u32,
    /// DATA frames with no payload and no END_STREAM.
    pub empty_data: u32,
    pub window_update: u32,
}

impl Default for FloodConfig {
    fn default() -> Self {
        use d::flood as f;
        FloodConfig {
            settings: f::SETTINGS,
            ping: f::PING,
            priority: f::PRIORITY,
            rst_stream: f::RST_STREAM,
            empty_data: f::EMPTY_DATA,
            window_update: f::WINDOW_UPDATE,
        }
    }
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: d::MAX_CONCURRENT_STREAMS,
            initial_stream_window: d::INITIAL_STREAM_WINDOW,
            initial_connection_window: d::INITIAL_CONNECTION_WINDOW,
            max_frame_size: d::MAX_FRAME_SIZE,
            header_table_size: d::HEADER_TABLE_SIZE,
            max_send_buffer: d::MAX_SEND_BUFFER,
            max_resets_per_second: d::MAX_RESETS_PER_SECOND,
            flood: FloodConfig::default(),
        }
    }
}
