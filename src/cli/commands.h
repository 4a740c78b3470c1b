#pragma once
// The trnsim command line: each subcommand registers its options on the app and runs when chosen.

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace trnsim::cli {

// Options every hardware-facing command shares.
struct ChipOptions {
    std::string chip = "trn2";
    std::vector<std::string> files;
    std::vector<std::string> overrides;
    void add_to(CLI::App& app);
};

// Each returns the function to run when its subcommand was chosen; it returns the exit code.
std::function<int()> add_kernel_command(CLI::App& app);
std::function<int()> add_presets_command(CLI::App& app);
std::function<int()> add_mem_command(CLI::App& app);
std::function<int()> add_describe_command(CLI::App& app);
std::function<int()> add_collective_command(CLI::App& app);
std::function<int()> add_run_command(CLI::App& app);
std::function<int()> add_sweep_command(CLI::App& app);
std::function<int()> add_merge_command(CLI::App& app);
std::function<int()> add_compare_command(CLI::App& app);

// The default simulation run by `trnsim` without a subcommand: `trnsim run` with its defaults.
int run_default();

}  // namespace trnsim::cli
