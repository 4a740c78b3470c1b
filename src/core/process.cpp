#include "trnsim/core/process.h"

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim {

namespace {

struct Child {
    pid_t pid = -1;
    int fd = -1;
};

Child spawn(const std::function<std::string()>& body) {
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
        } catch (const UserError& e) {
            out = std::string("error: ") + e.what();
        } catch (const std::exception& e) {
            out = std::string(k_internal_error) + e.what();
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
    return Child{pid, fds[0]};
}

// After the child's pipe reached its end: closes it and waits for the child.
void reap(const Child& c) {
    close(c.fd);
    int status = 0;
    waitpid(c.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("isolated child process failed");
}

std::string collect(const Child& c) {
    std::string result;
    char buf[65536];
    for (;;) {
        const ssize_t n = read(c.fd, buf, sizeof buf);
        if (n <= 0) break;
        result.append(buf, static_cast<std::size_t>(n));
    }
    reap(c);
    return result;
}

}  // namespace

std::string run_isolated(const std::function<std::string()>& body) {
    return collect(spawn(body));
}

std::vector<std::string> run_isolated_all(const std::vector<std::function<std::string()>>& bodies, int jobs) {
    // A pool: up to `jobs` children at a time, each pipe drained as data arrive (a child blocked on a full
    // pipe would otherwise never finish), the next child started as soon as one ends.
    std::vector<std::string> out(bodies.size());
    std::vector<Child> children(bodies.size());
    std::vector<bool> open(bodies.size(), false);
    std::size_t next = 0, running = 0;
    const std::size_t width = static_cast<std::size_t>(std::max(1, jobs));
    while (next < bodies.size() || running > 0) {
        while (running < width && next < bodies.size()) {
            children[next] = spawn(bodies[next]);
            open[next] = true;
            ++running;
            ++next;
        }
        std::vector<pollfd> fds;
        std::vector<std::size_t> index;
        for (std::size_t i = 0; i < bodies.size(); ++i) {
            if (!open[i]) continue;
            fds.push_back(pollfd{children[i].fd, POLLIN, 0});
            index.push_back(i);
        }
        if (poll(fds.data(), fds.size(), -1) < 0) throw std::runtime_error("poll failed");
        for (std::size_t k = 0; k < fds.size(); ++k) {
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const std::size_t i = index[k];
            char buf[65536];
            const ssize_t n = read(children[i].fd, buf, sizeof buf);
            if (n > 0) {
                out[i].append(buf, static_cast<std::size_t>(n));
                continue;
            }
            open[i] = false;
            --running;
            reap(children[i]);
        }
    }
    return out;
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

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

const std::string& code_identity() {
    static const std::string identity = [] {
        const auto exe = read_file("/proc/self/exe");
        if (!exe) return std::string();
        std::string text = stable_hash(*exe) + "\n";
        // The files mapped executable other than the executable itself (the shared libraries and the dynamic
        // loader), once each, as their file name, size and modification time, sorted: not their directory,
        // address or place in the map, which vary between runs and machines with the same build. (Not their
        // content: hashing 8 MB of libraries took ~15 ms of every run. A package's files keep the time its
        // archive gives them, so machines with the same packages agree, and another build differs.)
        std::set<std::string> paths;
        std::istringstream maps(read_file("/proc/self/maps").value_or(""));
        std::error_code ec;
        const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
        for (std::string line; std::getline(maps, line);) {
            // address perms offset device inode path
            std::istringstream fields(line);
            std::string address, perms;
            fields >> address >> perms;
            const std::size_t slash = line.find('/');
            if (perms.size() < 3 || perms[2] != 'x' || slash == std::string::npos) continue;
            const std::string path = line.substr(slash);
            if (path != self) paths.insert(path);
        }
        std::set<std::string> libraries;
        for (const std::string& path : paths) {
            struct stat st {};
            const std::string name = path.substr(path.rfind('/') + 1);
            libraries.insert(::stat(path.c_str(), &st) != 0
                                 ? name + " unreadable"
                                 : fmt::format("{} {} {}.{:09}", name, static_cast<long long>(st.st_size),
                                               static_cast<long long>(st.st_mtim.tv_sec),
                                               static_cast<long>(st.st_mtim.tv_nsec)));
        }
        for (const std::string& library : libraries) text += library + "\n";
        return stable_hash(text);
    }();
    return identity;
}

}  // namespace trnsim
