#pragma once
// A sweep file (docs/sweeps.md): one trnsim command, its base options, and grid (cartesian) and zip (lock-step)
// axes over the command's options or any config key. Expanded into points, each one trnsim command line.

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace trnsim::cli {

// One axis: a command option (`cluster`, `tp`, ...) or a config key (`chip.memory.bandwidth`, passed as --set).
struct SweepAxis {
    std::string key;
    std::vector<std::string> values;  // as written in the file
    bool option = false;
    bool flag = false;  // an option without a value (true: given, false: left out)
};

struct SweepSpec {
    std::string file;
    std::string command;                 // run | kernel | mem | collective
    std::vector<std::string> base_args;  // the base options as command-line arguments, after the command
    std::vector<SweepAxis> grid;         // first axis outermost
    std::vector<SweepAxis> zip;          // lock-step, all the same length
};

struct SweepPoint {
    std::size_t index = 0;
    std::vector<std::pair<std::string, std::string>> axes;  // grid axes, then zip axes, in file order
    std::vector<std::string> args;                          // the command and its arguments
};

// The commands a sweep runs, and the options of each that a sweep may set (named without dashes; kernel's
// positional operator is `op`). Options the sweep itself controls (json, trace, cache) are not among them.
const std::vector<std::string>& sweep_commands();
std::vector<std::string> sweep_option_names(const std::string& command);

// Parses and checks a sweep file; every problem is a UserError naming the file, the key path and what is
// allowed. Config keys and their values are checked against the parameter declarations; combinations are
// left to the points (a point that fails is recorded as failed).
SweepSpec parse_sweep_spec(const std::string& path);
SweepSpec parse_sweep_spec_text(const std::string& text, const std::string& file);

// Parses `args` (a command and its arguments) with that command's options, without running it; a rejection
// is a UserError starting with `context`.
void check_command_args(const std::vector<std::string>& args, const std::string& context);
// Checks the base options, and each value of each option axis with them, as the command would parse them.
void check_spec_args(const SweepSpec& spec);

std::size_t point_count(const SweepSpec& spec);
// Point `index` (0-based): grid axes as digits, the first axis the most significant, the zip group innermost.
SweepPoint expand_point(const SweepSpec& spec, std::size_t index);
std::vector<SweepPoint> expand(const SweepSpec& spec);

// One of N deterministic shards: point i belongs to shard (i mod N) + 1, so that costly corners of the grid
// spread over the shards.
struct Shard {
    int index = 1;  // 1..count
    int count = 1;
    bool contains(std::size_t point) const { return static_cast<int>(point % count) == index - 1; }
};

// "K/N", or "auto" / "auto/N": the index from a Slurm job array (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN,
// count SLURM_ARRAY_TASK_COUNT) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX, count from N or
// TRNSIM_SHARD_COUNT). `env` looks a variable up (empty: unset). UserError on anything else.
Shard parse_shard(const std::string& text, const std::map<std::string, std::string>& env);
std::map<std::string, std::string> shard_environment();

}  // namespace trnsim::cli
