#pragma once
// Renders a kernel result: JSON ("schema": "trnsim.kernel/1") and a terminal table.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "trnsim/runtime/kernel_runner.h"

namespace trnsim::report {

constexpr const char* k_kernel_schema = "trnsim.kernel/1";

nlohmann::json to_json(const runtime::KernelResult& result);
nlohmann::json config_to_json(const std::map<std::string, ConfigValue>& config);
std::string to_table(const runtime::KernelResult& result);

// The instruction timeline as a Chrome/Perfetto trace (JSON trace-event format; opens in ui.perfetto.dev):
// one track per engine and per DMA queue, times in microseconds.
nlohmann::json to_chrome_trace(const runtime::KernelResult& result);

// Throws UserError (naming `flag` and the reason) unless a file can be created at `path` (or, for an existing
// device or FIFO, written).
void check_writable(const std::string& path, const std::string& flag);
// Throws UserError naming both flags when two of the outputs (flag, path; empty paths skipped) are one file.
void check_distinct(const std::vector<std::pair<std::string, std::string>>& outputs);

// Writes all of `text` to the file descriptor `fd`, retrying short writes and EINTR; returns 0, or the errno of
// the write that failed.
int write_all(int fd, std::string_view text);

// Replaces `path` atomically and durably with what is written to it: a temporary file of this process in the
// same directory, fsynced, renamed into place by commit(), the directory fsynced. Errors are UserErrors; a
// failure, or destruction before commit(), leaves `path` as it was and no temporary file. A symbolic link is
// followed (the file it names is replaced; a loop is a UserError); an existing device or FIFO (/dev/null) is
// written in place, not replaced; /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N are written through
// the process's own descriptor, after what it printed there.
class AtomicFile {
public:
    explicit AtomicFile(std::string path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    void write(std::string_view text);
    void commit();

private:
    [[noreturn]] void fail(int error);
    std::string m_path;    // as given, for messages
    std::string m_target;  // the file replaced (the link's target); empty when written in place
    std::string m_tmp;     // empty when written in place
    int m_fd = -1;
    bool m_borrowed = false;  // a descriptor of the process named as a file (/dev/stdout): neither closed nor synced
};

// The same in one go: `path` becomes `text`.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace trnsim::report
