//! The wire types of `mmsearch.v1` (generated from `proto/` by `build.rs`), shared by the
//! server and the client.

tonic::include_proto!("mmsearch.v1");

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mmsearch_descriptor");
