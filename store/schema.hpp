#pragma once
// Names and version of the HDF5 cache schema (docs/hdf5-schema.md). Bump kSchemaVersion on any change
// an older reader would misread; readers refuse files with a newer version.
#include <cstdint>

namespace mechscope::store::schema {

/// The schema version this build writes and the newest it reads.
inline constexpr int64_t kSchemaVersion = 1;

/// Root attribute: the schema version (int64).
inline constexpr const char* kAttrSchemaVersion = "schema_version";
/// Root attribute: 1 once commit() finished writing; absent/0 in an unfinished file (int64).
inline constexpr const char* kAttrComplete = "mechscope_complete";
/// Dataset attribute naming the logical dtype when the HDF5 type alone does not ("bfloat16").
inline constexpr const char* kAttrLogicalDtype = "mechscope_dtype";
/// Dataset attribute on /activations/*: the TransformerLens hook name (same as the dataset name).
inline constexpr const char* kAttrHookName = "hook_name";
/// Dataset attribute: the axis names, comma-separated, e.g. "batch,head,query,key".
inline constexpr const char* kAttrAxes = "axes";

/// Group of activations, one dataset per TransformerLens hook name.
inline constexpr const char* kActivationsGroup = "/activations";
/// Group of analysis results.
inline constexpr const char* kAnalysesGroup = "/analyses";
/// [batch, pos] int64 token ids.
inline constexpr const char* kTokens = "/tokens";
/// [batch, pos] variable-length UTF-8 token strings.
inline constexpr const char* kTokenStrings = "/token_strings";
/// [batch, pos, vocab] logits.
inline constexpr const char* kLogits = "/logits";

/// Suffix of a file still being written.
inline constexpr const char* kPartialSuffix = ".partial";

}  // namespace mechscope::store::schema
