#pragma once
// Process-level helpers. SystemC elaborates once per process (docs/adr/0001), so a simulation that must run
// next to another one in the same program runs in a forked child; and results that outlive a process are
// keyed by a stable content hash.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trnsim {

// Runs `body` in a forked child and returns the string it produced (e.g. a JSON result). The child's
// copy of the process state is discarded. An exception in the child comes back as "error: <what>", one that
// was not a UserError (error.h) as "error: internal: <what>" (k_internal_error); a child that dies otherwise
// throws std::runtime_error in the parent.
std::string run_isolated(const std::function<std::string()>& body);
inline constexpr const char* k_internal_error = "error: internal: ";

// Runs each body in its own forked child, at most `jobs` at a time, and returns their strings in order
// (each as run_isolated would).
std::vector<std::string> run_isolated_all(const std::vector<std::function<std::string()>>& bodies, int jobs);

// 128-bit FNV-1a of `text` as 32 hex digits: the same on every machine and run.
std::string stable_hash(std::string_view text);

// The whole content of the file at `path`, byte for byte; nullopt when it cannot be opened.
std::optional<std::string> read_file(const std::string& path);

// A stable_hash of the code this process runs: its executable by content, and every shared library mapped
// into it (/proc/self/maps) by file name, size and modification time, so that results cached on disk by one
// build are not taken for another's (a rebuilt trnsim, or another SystemC or libstdc++ on a machine sharing
// the cache). "" when the executable cannot be read. Computed once per process.
const std::string& code_identity();

}  // namespace trnsim
