#include "trnsim/core/process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>

namespace trnsim {

std::string run_isolated(const std::function<std::string()>& body) {
    std::fflush(nullptr);  // nothing buffered is written twice
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        close(fds[0]);
        std::string out;
        try {
            out = body();
        } catch (const std::exception& e) {
            out = std::string("error: ") + e.what();
        }
        std::size_t off = 0;
        while (off < out.size()) {
            const ssize_t n = write(fds[1], out.data() + off, out.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    std::string result;
    char buf[65536];
    for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        result.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("isolated child process failed");
    return result;
}

std::string stable_hash(std::string_view text) {
    // Two 64-bit FNV-1a lanes with different offset bases.
    std::uint64_t a = 14695981039346656037ull, b = 0x6c62272e07bb0142ull;
    for (const char ch : text) {
        const auto c = static_cast<std::uint8_t>(ch);
        a = (a ^ c) * 1099511628211ull;
        b = (b ^ c) * 0x100000001b3ull;
        b ^= b >> 29;
    }
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(a),
                  static_cast<unsigned long long>(b));
    return out;
}

}  // namespace trnsim
