#pragma once
// Runs the real trnsim binary ($TRNSIM_BIN, set by CTest) for CLI tests: to completion, capturing its output,
// or in the background, to be killed half-way.

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace trnsim::testing {

struct ProcessResult {
    int exit_code = -1;  // -1: ended by a signal
    std::string out, err;
};

std::string trnsim_binary();

// Runs `trnsim args...` in `cwd` (empty: this process's) with `env` added to the environment.
ProcessResult run_trnsim_in(const std::vector<std::string>& args, const std::string& cwd,
                            const std::map<std::string, std::string>& env = {});

// Starts `trnsim args...` in `cwd` with its output discarded; returns its process id.
pid_t start_trnsim_in(const std::vector<std::string>& args, const std::string& cwd);

// A fresh directory, removed with its contents at the end of the scope.
class ScratchDir {
public:
    ScratchDir();
    ~ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    const std::string& path() const { return m_path; }
    std::string file(const std::string& name) const { return m_path + "/" + name; }
    std::string write(const std::string& name, const std::string& text) const;
    std::string read(const std::string& name) const;
    std::vector<std::string> entries() const;  // sorted names

private:
    std::string m_path;
};

}  // namespace trnsim::testing
