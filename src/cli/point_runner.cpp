#include "point_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "trnsim/core/process.h"

namespace trnsim::cli {

namespace {

std::string self_exe() {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw std::runtime_error("cannot find the trnsim executable (/proc/self/exe)");
    return std::string(buf, static_cast<std::size_t>(n));
}

// A private directory for the workers' result files, removed with its contents at the end.
class WorkDir {
public:
    WorkDir() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/trnsim-sweep-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error(fmt::format("cannot create a temporary directory {}", pattern));
        m_path = pattern;
    }
    ~WorkDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    WorkDir(const WorkDir&) = delete;
    WorkDir& operator=(const WorkDir&) = delete;
    std::string file(std::size_t point, const char* ext) const { return fmt::format("{}/p{}.{}", m_path, point, ext); }

private:
    std::string m_path;
};

// Blocks the signals the sweep waits for, and restores the previous mask at the end.
class SignalBlock {
public:
    SignalBlock() {
        sigemptyset(&m_set);
        for (const int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&m_set, s);
        sigprocmask(SIG_BLOCK, &m_set, &m_old);
    }
    ~SignalBlock() {
        // A stop signal that arrived after the last wait stays pending and acts once unblocked: consume the
        // child notifications only.
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        const timespec zero{0, 0};
        while (sigtimedwait(&chld, nullptr, &zero) > 0) {
        }
        sigprocmask(SIG_SETMASK, &m_old, nullptr);
    }
    SignalBlock(const SignalBlock&) = delete;
    SignalBlock& operator=(const SignalBlock&) = delete;
    const sigset_t& set() const { return m_set; }
    const sigset_t& old() const { return m_old; }

private:
    sigset_t m_set, m_old;
};

// The worker's message: the "trnsim: error: ..." line without its prefix, else its last line.
std::string error_message(const std::string& err, int status) {
    std::string last, user;
    std::istringstream lines(err);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        last = line;
        if (line.rfind("trnsim: error: ", 0) == 0) user = line.substr(15);
    }
    if (WIFSIGNALED(status))
        return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (!user.empty()) return user;
    if (last.rfind("trnsim: ", 0) == 0) last = last.substr(8);
    return last.empty() ? fmt::format("exited with code {}", WEXITSTATUS(status))
                        : fmt::format("{} (exit code {})", last, WEXITSTATUS(status));
}

struct Running {
    const SweepPoint* point = nullptr;
    std::chrono::steady_clock::time_point start;
};

}  // namespace

int run_points(const std::vector<SweepPoint>& points, const PointRunnerOptions& options,
               const std::function<void(const SweepPoint&, PointOutcome)>& on_done,
               const std::function<void()>& on_tick) {
    const std::string exe = self_exe();
    const WorkDir dir;
    const SignalBlock signals;
    const pid_t parent = ::getpid();
    std::map<pid_t, Running> running;
    std::size_t next = 0;
    int stop = 0;

    auto launch = [&](const SweepPoint& p) {
        std::vector<std::string> args = {exe};
        args.insert(args.end(), p.args.begin(), p.args.end());
        args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
        args.push_back("--json");
        args.push_back(dir.file(p.index, "json"));
        const std::string err = dir.file(p.index, "err");
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::fflush(nullptr);
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a worker never outlives its sweep
            if (::getppid() != parent) ::_exit(127);
            sigprocmask(SIG_SETMASK, &signals.old(), nullptr);
            const int null = ::open("/dev/null", O_RDWR);
            const int efd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (null < 0 || efd < 0) ::_exit(127);
            ::dup2(null, STDIN_FILENO);
            ::dup2(null, STDOUT_FILENO);
            ::dup2(efd, STDERR_FILENO);
            ::execv(exe.c_str(), argv.data());
            ::_exit(127);
        }
        running[pid] = Running{&p, std::chrono::steady_clock::now()};
    };

    auto finish = [&](pid_t pid, int status) {
        const auto it = running.find(pid);
        if (it == running.end()) return;
        const Running r = it->second;
        running.erase(it);
        const SweepPoint& p = *r.point;
        if (WIFSIGNALED(status) &&
            (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGHUP)) {
            // Stopped from outside (Ctrl-C reaches the whole process group): not a result, and the sweep stops.
            if (stop == 0) stop = WTERMSIG(status);
            return;
        }
        PointOutcome out;
        out.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            try {
                out.result = ordered_json::parse(read_file(dir.file(p.index, "json")).value_or(std::string()));
                if (out.result.contains("sim")) {
                    out.sim = out.result["sim"];
                    out.result.erase("sim");
                }
                out.ok = true;
            } catch (const std::exception&) {
                out.error = "exited with code 0 but wrote no readable result";
            }
        } else {
            out.error = error_message(read_file(dir.file(p.index, "err")).value_or(std::string()), status);
        }
        std::remove(dir.file(p.index, "json").c_str());
        std::remove(dir.file(p.index, "err").c_str());
        on_done(p, std::move(out));
    };

    const std::size_t width = static_cast<std::size_t>(std::max(1, options.jobs));
    try {
        while (true) {
            while (stop == 0 && running.size() < width && next < points.size()) launch(points[next++]);
            if (running.empty()) break;
            bool reaped = false;
            for (;;) {
                int status = 0;
                const pid_t pid = ::waitpid(-1, &status, WNOHANG);
                if (pid <= 0) break;
                finish(pid, status);
                reaped = true;
            }
            if (reaped) continue;
            const timespec wait{0, 250 * 1000 * 1000};
            const int sig = sigtimedwait(&signals.set(), nullptr, &wait);
            if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
                if (stop == 0) stop = sig;
                for (const auto& [pid, r] : running) ::kill(pid, SIGTERM);
            } else if (sig < 0) {
                on_tick();
            }
        }
    } catch (...) {
        for (const auto& [pid, r] : running) ::kill(pid, SIGKILL);
        for (const auto& [pid, r] : running) ::waitpid(pid, nullptr, 0);
        throw;
    }
    return stop;
}

}  // namespace trnsim::cli
