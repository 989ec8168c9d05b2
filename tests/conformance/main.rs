//! One conformance suite, run against every backend and pair of backends.
//!
//! `checks.rs` holds each check once; the lines below say which checks run where, one test name
//! per check and backend (`to_seaweed::multipart_100mib`, `pair_gcs_to_azurite::hostile_keys_roundtrip`):
//! - `to_X`: X as the destination, fed from the in-process memory store (from local, for X = memory);
//! - `from_X`: X as the source, into memory (into local, for X = memory);
//! - `pair_A_to_B`: every ordered pair of backends, including S3 to S3 across two servers.
//!
//! Capability differences are declared in `harness::Backend::caps`, with the reason, not by
//! copying tests. The servers come from tests/servers/up.sh; see docs/testing.md.

mod checks;
mod harness;

use harness::Backend;

macro_rules! suite {
    ($module:ident, $src:ident, $dst:ident, [$($check:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    checks::$check(stringify!($check), Backend::$src, Backend::$dst).await;
                }
            )*
        }
    };
}

suite!(to_local, Memory, Local, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(to_memory, Local, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(to_seaweed, Memory, Seaweed, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(to_moto, Memory, Moto, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(to_azurite, Memory, Azurite, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(to_gcs, Memory, Gcs, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_local, Local, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_memory, Memory, Local, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_seaweed, Seaweed, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_moto, Moto, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_azurite, Azurite, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);
suite!(from_gcs, Gcs, Memory, [empty_object, one_byte, exactly_one_part, part_size_plus_minus_one, multipart_100mib, many_small_objects, hostile_keys_roundtrip, prefix_mapping, include_exclude, rerun_moves_nothing, changed_object_resent, corruption_found_by_verify, metadata_preserved]);

suite!(pair_local_to_memory, Local, Memory, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_local_to_seaweed, Local, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_local_to_moto, Local, Moto, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_local_to_azurite, Local, Azurite, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_local_to_gcs, Local, Gcs, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_memory_to_local, Memory, Local, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_memory_to_seaweed, Memory, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_memory_to_moto, Memory, Moto, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_memory_to_azurite, Memory, Azurite, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_memory_to_gcs, Memory, Gcs, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_local, Seaweed, Local, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_memory, Seaweed, Memory, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_moto, Seaweed, Moto, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_azurite, Seaweed, Azurite, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_gcs, Seaweed, Gcs, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_moto_to_local, Moto, Local, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_moto_to_memory, Moto, Memory, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_moto_to_seaweed, Moto, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_moto_to_azurite, Moto, Azurite, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_moto_to_gcs, Moto, Gcs, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_azurite_to_local, Azurite, Local, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_azurite_to_memory, Azurite, Memory, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_azurite_to_seaweed, Azurite, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_azurite_to_moto, Azurite, Moto, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_azurite_to_gcs, Azurite, Gcs, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_gcs_to_local, Gcs, Local, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_gcs_to_memory, Gcs, Memory, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_gcs_to_seaweed, Gcs, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_gcs_to_moto, Gcs, Moto, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_gcs_to_azurite, Gcs, Azurite, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);
suite!(pair_seaweed_to_seaweed, Seaweed, Seaweed, [hostile_keys_roundtrip, mixed_sizes, metadata_preserved, rerun_moves_nothing]);

