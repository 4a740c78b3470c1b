#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "point_runner.h"
#include "progress.h"
#include "sweep_records.h"
#include "sweep_spec.h"
#include "trnsim/core/error.h"
#include "trnsim/report/kernel_report.h"

namespace trnsim::cli {

namespace {

namespace fs = std::filesystem;

struct SweepArgs {
    std::string spec;
    std::string output;
    std::string shard;
    std::string cache;
    int jobs = 0;
    bool resume = false;
    bool quiet = false;
};

// A finished point: where the JSONL holds its record (not the record itself: a sweep's records may not fit in
// memory), and its CSV row (a few hundred bytes).
struct Done {
    LineSpan line;    // in the JSONL output
    std::string csv;  // CSV row, with its '\n'
    bool ok = false;
};

class AppendFile {
public:
    AppendFile(const std::string& path, bool truncate) : m_path(path) {
        m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
        if (m_fd < 0) throw UserError(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
        struct stat st {};
        if (::fstat(m_fd, &st) != 0) throw UserError(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
        m_size = static_cast<std::uint64_t>(st.st_size);
    }
    ~AppendFile() { ::close(m_fd); }
    AppendFile(const AppendFile&) = delete;
    AppendFile& operator=(const AppendFile&) = delete;
    // Returns where the text went (this process is the file's only writer).
    std::uint64_t append(const std::string& text) {
        append_durable(m_fd, text, m_path);
        m_size += text.size();
        return m_size - text.size();
    }

private:
    std::string m_path;
    int m_fd = -1;
    std::uint64_t m_size = 0;
};

std::string point_label(const SweepPoint& p) {
    std::string out;
    for (const auto& [k, v] : p.axes) out += (out.empty() ? "" : " ") + k + "=" + v;
    return out.empty() ? "(base)" : out;
}

// The records of an earlier run of this sweep (--resume), checked against the spec; the file is cut back to
// its complete lines.
std::map<std::size_t, Done> load_finished(const std::string& path, const SweepSpec& spec, const Shard& shard,
                                          std::size_t total, const std::string& schema) {
    std::map<std::size_t, Done> done;
    if (!fs::exists(path)) return done;
    const ScanEnd file = scan_records(path, [&](ordered_json&& r, const LineSpan& at, const std::string&) {
        const std::size_t index = r["point"].get<std::size_t>();
        const std::string where = fmt::format("--resume: {} line {} (point {})", path, at.line, index);
        if (index >= total || !shard.contains(index) || r.value("points", ordered_json()) != total ||
            r["args"] != ordered_json(expand_point(spec, index).args)) {
            throw UserError(fmt::format(
                "{} was not written by this sweep (sweep file {}{}); allowed: resume with "
                "the sweep file and --shard that wrote it, or write to a new --output",
                where, spec.file, shard.count > 1 ? fmt::format(", shard {}/{}", shard.index, shard.count) : ""));
        }
        if (done.count(index)) throw UserError(fmt::format("{}: the point appears twice", where));
        done[index] = Done{at, csv_row(r, schema), r["status"] == "ok"};
    });
    if (file.truncated_tail) {
        // An append cut short (machine loss): the point it held runs again.
        if (::truncate(path.c_str(), static_cast<off_t>(file.complete_bytes)) != 0)
            throw UserError(fmt::format("--resume: cannot repair '{}': {}", path, std::strerror(errno)));
        std::fprintf(stderr, "trnsim sweep: %s ended in an incomplete line; dropped it, that point runs again\n",
                     path.c_str());
    }
    return done;
}

int run_sweep(const SweepArgs& a) {
    const SweepSpec spec = parse_sweep_spec(a.spec);
    check_spec_args(spec);
    Shard shard;
    if (!a.shard.empty()) shard = parse_shard(a.shard, shard_environment());
    const int jobs = a.jobs > 0 ? a.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

    std::string output = a.output;
    if (output.empty()) {
        output = fs::path(a.spec).stem().string();
        if (shard.count > 1) output += fmt::format(".shard-{}-of-{}", shard.index, shard.count);
        output += ".jsonl";
    }
    const std::string stem = output_stem(output);
    const std::string csv_path = stem + ".csv", sim_path = stem + ".sim.jsonl";
    for (const auto& p : {output, csv_path, sim_path}) report::check_writable(p, "--output");
    if (!a.resume && fs::exists(output)) {
        throw UserError(
            fmt::format("--output {}: exists; allowed: --resume to finish that sweep, or a new path", output));
    }
    std::string cache;
    if (spec.command == "run") {
        cache = a.cache.empty() ? stem + ".kernel-cache" : a.cache;
        if (fs::exists(cache) && !fs::is_directory(cache))
            throw UserError(
                fmt::format("--cache {}: not a directory; allowed: a directory (created if missing)", cache));
    } else if (!a.cache.empty()) {
        throw UserError(fmt::format("--cache {}: only run sweeps use the kernel cache (this is a {} sweep)", a.cache,
                                    spec.command));
    }

    const std::size_t total = point_count(spec);
    const std::string schema = schema_of_command(spec.command);
    std::vector<std::string> axis_keys;
    for (const auto* s : {&spec.grid, &spec.zip})
        for (const auto& axis : *s) axis_keys.push_back(axis.key);
    std::map<std::size_t, Done> done = load_finished(output, spec, shard, total, schema);

    // From here on files are written.
    std::vector<SweepPoint> todo;
    std::size_t in_shard = 0;
    for (std::size_t i = 0; i < total; ++i) {
        if (!shard.contains(i)) continue;
        ++in_shard;
        if (!done.count(i)) todo.push_back(expand_point(spec, i));
    }
    {
        std::string csv = csv_header(axis_keys, schema);
        for (const auto& [i, d] : done) csv += d.csv;
        report::write_file_atomic(csv_path, csv);  // consistent with the JSONL from the start
    }
    if (!cache.empty()) fs::create_directories(cache);
    AppendFile jsonl(output, false), csv(csv_path, false), sim(sim_path, !a.resume);

    Progress progress(in_shard, done.size(), a.quiet);
    PointRunnerOptions options;
    options.jobs = jobs;
    if (!cache.empty()) options.extra_args = {"--cache", cache};
    const int signal = run_points(
        todo, options,
        [&](const SweepPoint& p, PointOutcome out) {
            const ordered_json record =
                out.ok ? ok_record(p, total, std::move(out.result)) : failed_record(p, total, out.error);
            const std::string line = record_line(record);
            Done d{LineSpan{jsonl.append(line), line.size(), 0}, csv_row(record, schema), out.ok};
            csv.append(d.csv);
            ordered_json cost;
            cost["point"] = p.index;
            cost["wall_s"] = out.wall_s;
            cost["sim"] = out.sim;
            sim.append(cost.dump() + "\n");
            done[p.index] = std::move(d);
            if (!out.ok) progress.note(fmt::format("point {} ({}) failed: {}", p.index, point_label(p), out.error));
            progress.point_done(out.ok);
        },
        [&] { progress.tick(); });
    progress.finish();
    if (signal != 0) {
        std::fprintf(stderr,
                     "trnsim sweep: interrupted (%s): %zu of %zu points recorded in %s; the same command with "
                     "--resume finishes it\n",
                     strsignal(signal), done.size(), in_shard, output.c_str());
        return 128 + signal;
    }

    // Complete: the outputs in point order, so that every run, -j and sharding (after merge) gives the same bytes.
    std::string rows = csv_header(axis_keys, schema);
    std::vector<LineSpan> lines;
    std::size_t failed = 0;
    for (const auto& [i, d] : done) {
        lines.push_back(d.line);
        rows += d.csv;
        failed += d.ok ? 0 : 1;
    }
    {
        report::AtomicFile sorted(output);
        std::ifstream in = open_records(output);
        for (const LineSpan& l : lines) copy_line(in, output, l, sorted);
        sorted.commit();
    }
    report::write_file_atomic(csv_path, rows);
    std::printf("trnsim sweep: %zu points%s, %zu ok, %zu failed: %s, %s\n", in_shard,
                shard.count > 1 ? fmt::format(" (shard {}/{} of {})", shard.index, shard.count, total).c_str() : "",
                in_shard - failed, failed, output.c_str(), csv_path.c_str());
    return failed > 0 ? 1 : 0;
}

}  // namespace

std::function<int()> add_sweep_command(CLI::App& app) {
    auto a = std::make_shared<SweepArgs>();
    auto* sub = app.add_subcommand("sweep", "run every point of a sweep file in parallel worker processes");
    sub->add_option("spec", a->spec, "sweep file (YAML: command, base, grid, zip; docs/sweeps.md)")->required();
    sub->add_option("-o,--output", a->output,
                    "JSON Lines output, one record per point (default: SPEC's name .jsonl); also STEM.csv and "
                    "STEM.sim.jsonl (the simulator's own cost)");
    sub->add_option("-j,--jobs", a->jobs, "worker processes (default: the number of cores)")
        ->check(CLI::Range(1, 4096));
    sub->add_flag("--resume", a->resume, "finish an interrupted sweep: skip the points already in --output");
    sub->add_option("--shard", a->shard,
                    "run shard K/N (points i with i mod N = K-1), or auto: from SLURM_ARRAY_TASK_ID/COUNT or "
                    "JOB_COMPLETION_INDEX and TRNSIM_SHARD_COUNT (or auto/N)");
    sub->add_option("--cache", a->cache, "kernel cache shared by run points (default: STEM.kernel-cache)");
    sub->add_flag("-q,--quiet", a->quiet, "no progress on stderr");
    return [a, sub] {
        if (!sub->parsed()) return 2;
        return run_sweep(*a);
    };
}

}  // namespace trnsim::cli
