#include "trnsim/report/kernel_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "trnsim/core/error.h"
#include "trnsim/core/units.h"

namespace trnsim::report {

nlohmann::json config_to_json(const std::map<std::string, ConfigValue>& config) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [key, v] : config) j[key] = {{"value", v.text}, {"source", v.source}};
    return j;
}

nlohmann::json to_json(const runtime::KernelResult& r) {
    nlohmann::json j;
    j["schema"] = k_kernel_schema;
    j["op"] = r.op;
    j["shape"] = nlohmann::json::object();
    for (const auto& [name, v] : r.shape) j["shape"][name] = v;
    j["dtype"] = r.dtype;
    j["chip"] = r.chip;
    j["cycles"] = r.cycles;
    j["clock"] = "tensor_engine";
    j["time_s"] = r.time_s;
    j["flops"] = r.flops;
    j["achieved_tflops"] = r.achieved_tflops;
    j["peak_tflops"] = r.peak_tflops;
    j["utilization"] = r.utilization;
    j["instructions"] = r.instructions;
    j["tensor_engine"] = {{"cycles", r.tensor_engine_cycles}, {"macs", r.tensor_macs}};
    j["hbm"] = {{"model", r.memory_model},
                {"read_bytes", r.hbm_read_bytes},
                {"write_bytes", r.hbm_write_bytes},
                {"bandwidth_gbps", r.memory_bandwidth_gbps},
                {"peak_gbps", r.memory_peak_gbps}};
    for (const auto& [k, v] : r.memory_summary) j["hbm"][k] = v;
    j["dma"] = {{"transfers", r.dma_transfers},
                {"program_read_bytes", r.program_read_bytes},
                {"program_write_bytes", r.program_write_bytes}};
    j["sbuf_peak_bytes"] = r.sbuf_peak_bytes;
    j["plan"] = r.plan;
    if (r.functional) j["functional"] = {{"max_rel_error", r.max_rel_error}, {"metric", "max|y-ref| / max|ref|"}};
    j["sim"] = {{"wall_s", r.wall_s}, {"events", r.events}, {"peak_rss_bytes", r.peak_rss_bytes}};
    j["config"] = config_to_json(r.config);
    return j;
}

namespace {
// Sizes for people: three significant digits in the largest binary unit.
std::string size_text(std::uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
    return fmt::format("{:.3g} {}", v, units[u]);
}
}  // namespace

std::string to_table(const runtime::KernelResult& r) {
    std::string shape;
    for (const auto& [k, v] : r.shape) shape += fmt::format("{}{}={}", shape.empty() ? "" : " ", k, v);
    std::string out;
    out += fmt::format("trnsim kernel {} on {} ({}), {}\n", r.op, r.chip, r.dtype, shape);
    out += fmt::format("  {:<22}{} cycles (tensor-engine clock)\n", "time", r.cycles);
    out += fmt::format("  {:<22}{:.3f} us\n", "", r.time_s * 1e6);
    out += fmt::format("  {:<22}{:.2f} TFLOPS of {:.2f} peak ({:.1f}%)\n", "throughput", r.achieved_tflops,
                       r.peak_tflops, 100.0 * r.achieved_tflops / r.peak_tflops);
    out += fmt::format("  {:<22}{} cycles, {} MACs\n", "tensor engine", r.tensor_engine_cycles, r.tensor_macs);
    out += "  engine busy           ";
    for (const char* e : {"tensor", "vector", "scalar", "gpsimd", "dma"}) {
        out += fmt::format("{} {:.1f}%  ", e, 100.0 * r.utilization.at(e));
    }
    out += "\n";
    out += fmt::format("  {:<22}read {}  write {}  ({:.1f} of {:.1f} GB/s, {} model)\n", "HBM",
                       size_text(r.hbm_read_bytes), size_text(r.hbm_write_bytes), r.memory_bandwidth_gbps,
                       r.memory_peak_gbps, r.memory_model);
    if (r.memory_summary.count("energy_pj_per_bit")) {
        out += fmt::format("  {:<22}{:.1f}% row hits, {:.2f} pJ/bit, {:.1f}% of the time refreshing\n", "",
                           100 * r.memory_summary.at("row_hit_rate"), r.memory_summary.at("energy_pj_per_bit"),
                           100 * r.memory_summary.at("refresh_share"));
    }
    out +=
        fmt::format("  {:<22}{} of SBUF, {} DMA transfers\n", "on chip", size_text(r.sbuf_peak_bytes), r.dma_transfers);
    if (r.functional) out += fmt::format("  {:<22}{:.3e} (max|y-ref|/max|ref|)\n", "functional error", r.max_rel_error);
    out += fmt::format("  {:<22}{:.3f} s wall, {} events, {:.1f} MiB peak memory\n", "simulator", r.wall_s, r.events,
                       static_cast<double>(r.peak_rss_bytes) / 1048576.0);
    return out;
}

nlohmann::json to_chrome_trace(const runtime::KernelResult& r) {
    nlohmann::json events = nlohmann::json::array();
    constexpr int k_dma_tid0 = 100;
    for (int e = 0; e < hw::k_compute_engines; ++e) {
        events.push_back(
            {{"name", "thread_name"},
             {"ph", "M"},
             {"pid", 1},
             {"tid", e},
             {"args", {{"name", std::string(hw::engine_name(static_cast<hw::EngineKind>(e))) + " engine"}}}});
    }
    int queues = 0;
    for (const auto& t : r.trace) queues = std::max(queues, t.dma ? t.track + 1 : 0);
    for (int q = 0; q < queues; ++q) {
        events.push_back({{"name", "thread_name"},
                          {"ph", "M"},
                          {"pid", 1},
                          {"tid", k_dma_tid0 + q},
                          {"args", {{"name", fmt::format("dma queue {}", q)}}}});
    }
    for (const auto& t : r.trace) {
        events.push_back({{"name", hw::op_name(t.op)},
                          {"ph", "X"},
                          {"pid", 1},
                          {"tid", t.dma ? k_dma_tid0 + t.track : t.track},
                          {"ts", static_cast<double>(t.start_fs) * 1e-9},
                          {"dur", static_cast<double>(t.end_fs - t.start_fs) * 1e-9}});
    }
    return {{"traceEvents", events},
            {"displayTimeUnit", "ns"},
            {"otherData", {{"op", r.op}, {"chip", r.chip}, {"dtype", r.dtype}}}};
}

namespace {

// A file descriptor of this process named as a file (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N): it is
// written through that descriptor, whatever it is open on (a terminal, a pipe, a file the shell redirected it
// to, which reopening the name would overwrite from its start). -1: not one.
int named_descriptor(const std::string& path) {
    if (path == "/dev/stdout") return 1;
    if (path == "/dev/stderr") return 2;
    for (const std::string prefix : {"/dev/fd/", "/proc/self/fd/"}) {
        if (path.rfind(prefix, 0) != 0) continue;
        int fd = -1;
        const char* begin = path.data() + prefix.size();
        const char* end = path.data() + path.size();
        const auto [ptr, ec] = std::from_chars(begin, end, fd);
        if (ec == std::errc() && ptr == end && ptr != begin && ::fcntl(fd, F_GETFD) != -1) return fd;
    }
    return -1;
}

// An existing file that is not a regular one (a device, a FIFO), reached through any links: written in place.
bool written_in_place(const std::string& path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    return !ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st) &&
           !std::filesystem::is_directory(st);
}

// The file that writing `path` replaces: through symbolic links to the file they name. UserError on a loop or
// a link that cannot be read.
std::filesystem::path target_of(const std::string& path) {
    namespace fs = std::filesystem;
    fs::path p = path;
    for (int hops = 0;; ++hops) {
        std::error_code ec;
        if (!fs::is_symlink(fs::symlink_status(p, ec))) return p;
        if (hops == 40) throw UserError(fmt::format("cannot write '{}': too many levels of symbolic links", path));
        const fs::path to = fs::read_symlink(p, ec);
        if (ec)
            throw UserError(
                fmt::format("cannot write '{}': cannot read the link {}: {}", path, p.string(), ec.message()));
        p = to.is_absolute() ? to : p.parent_path() / to;
    }
}

}  // namespace

void check_writable(const std::string& path, const std::string& flag) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (named_descriptor(path) >= 0) return;
    if (fs::is_directory(path, ec))
        throw UserError(fmt::format("{} {}: is a directory; allowed: a file path", flag, path));
    if (written_in_place(path)) {
        if (access(path.c_str(), W_OK) != 0)
            throw UserError(fmt::format("{} {}: cannot write: {}", flag, path, std::strerror(errno)));
        return;
    }
    const fs::path target = target_of(path);
    const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    if (!fs::is_directory(parent, ec)) {
        throw UserError(fmt::format("{} {}: directory '{}' does not exist", flag, path, parent.string()));
    }
    if (access(parent.c_str(), W_OK) != 0) {
        throw UserError(
            fmt::format("{} {}: cannot write into '{}': {}", flag, path, parent.string(), std::strerror(errno)));
    }
}

void check_distinct(const std::vector<std::pair<std::string, std::string>>& outputs) {
    namespace fs = std::filesystem;
    // Files that would be replaced, by the file they are (streams and devices take both outputs in turn).
    auto replaced = [](const std::string& path) {
        std::error_code ec;
        if (path.empty() || named_descriptor(path) >= 0 || written_in_place(path)) return fs::path();
        return fs::weakly_canonical(fs::absolute(target_of(path), ec), ec);
    };
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        for (std::size_t j = i + 1; j < outputs.size(); ++j) {
            const auto& [flag_a, a] = outputs[i];
            const auto& [flag_b, b] = outputs[j];
            const fs::path ta = replaced(a);
            if (!ta.empty() && ta == replaced(b))
                throw UserError(fmt::format("{} {} and {} {} name the same file; allowed: two different files", flag_a,
                                            a, flag_b, b));
        }
    }
}

AtomicFile::AtomicFile(std::string path) : m_path(std::move(path)) {
    if (const int fd = named_descriptor(m_path); fd >= 0) {
        m_fd = fd;
        m_borrowed = true;
        return;
    }
    if (written_in_place(m_path)) {
        m_fd = ::open(m_path.c_str(), O_WRONLY | O_CLOEXEC);
    } else {
        // The temporary file is this process's own (concurrent writers of one path don't share it) and in the
        // target's directory (the rename stays within one file system); a link keeps pointing at the target.
        m_target = target_of(m_path).string();
        m_tmp = fmt::format("{}.tmp{}", m_target, static_cast<long>(::getpid()));
        m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (m_fd < 0) throw UserError(fmt::format("cannot write '{}': {}", m_path, std::strerror(errno)));
}

AtomicFile::~AtomicFile() {
    if (m_fd < 0 || m_borrowed) return;  // committed, or not ours to close
    ::close(m_fd);
    if (!m_tmp.empty()) std::remove(m_tmp.c_str());
}

void AtomicFile::fail(int error) {
    if (!m_borrowed) ::close(m_fd);
    m_fd = -1;
    if (!m_tmp.empty()) std::remove(m_tmp.c_str());
    throw UserError(fmt::format("cannot write '{}': {}", m_path, std::strerror(error)));
}

int write_all(int fd, std::string_view text) {
    std::size_t off = 0;
    while (off < text.size()) {
        const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? errno : EIO;
        off += static_cast<std::size_t>(n);
    }
    return 0;
}

void AtomicFile::write(std::string_view text) {
    if (m_borrowed) std::fflush(nullptr);  // what the process printed there comes first
    if (const int error = write_all(m_fd, text)) fail(error);
}

void AtomicFile::commit() {
    if (m_borrowed) {
        m_fd = -1;
        return;
    }
    if (m_tmp.empty()) {  // written in place
        const int fd = m_fd;
        m_fd = -1;
        if (::close(fd) != 0) throw UserError(fmt::format("cannot write '{}': {}", m_path, std::strerror(errno)));
        return;
    }
    if (::fsync(m_fd) != 0) fail(errno);
    ::close(m_fd);
    m_fd = -1;
    if (std::rename(m_tmp.c_str(), m_target.c_str()) != 0) {
        const int error = errno;
        std::remove(m_tmp.c_str());
        throw UserError(fmt::format("cannot write '{}': {}", m_path, std::strerror(error)));
    }
    const std::string dir = std::filesystem::path(m_target).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);  // the rename itself survives a machine loss
        ::close(dfd);
    }
}

void write_file_atomic(const std::string& path, const std::string& text) {
    AtomicFile f(path);
    f.write(text);
    f.commit();
}

}  // namespace trnsim::report
