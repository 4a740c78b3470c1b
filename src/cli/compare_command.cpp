#include <cmath>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "compare.h"
#include "point_runner.h"
#include "sweep_spec.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/report/kernel_report.h"

namespace trnsim::cli {

namespace {

struct CompareArgs {
    std::vector<std::string> files;
    std::string tolerance = "0%";
    std::vector<std::string> metrics;
    std::string junit;
    bool drift = false;
    std::vector<std::string> clusters, chips;
    std::string command;
    int jobs = 0;
};

int compare_files(const CompareArgs& a) {
    if (a.files.size() != 2)
        throw UserError(
            fmt::format("compare: {} files given; allowed: BASE NEW (two results or two sweep outputs), "
                        "or --cluster A --cluster B ... with a workload",
                        a.files.size()));
    const double tolerance = parse_tolerance(a.tolerance, "--tolerance");
    std::vector<MetricSpec> metrics;
    for (const auto& m : a.metrics) metrics.push_back(parse_metric(m, tolerance));
    if (!a.junit.empty()) report::check_writable(a.junit, "--junit");
    const ResultSet base = load_results(a.files[0]);
    const ResultSet now = load_results(a.files[1]);
    const CompareReport result = compare_results(base, now, metrics, tolerance, a.drift);
    std::fputs(to_table(result).c_str(), stdout);
    if (!a.junit.empty()) report::write_file_atomic(a.junit, to_junit(result));
    return result.failures() > 0 ? 1 : 0;
}

// The same workload on several configs, side by side: each config runs as a worker process.
int compare_configs(const CompareArgs& a, const std::vector<std::string>& workload) {
    const bool clusters = !a.clusters.empty();
    if (clusters && !a.chips.empty()) throw UserError("compare: give --cluster or --chip configs, not both");
    const std::vector<std::string>& configs = clusters ? a.clusters : a.chips;
    const std::string command = !a.command.empty() ? a.command : clusters ? "run" : "kernel";
    const std::vector<std::string> allowed =
        clusters ? std::vector<std::string>{"run", "collective"} : std::vector<std::string>{"kernel", "mem"};
    if (std::find(allowed.begin(), allowed.end(), command) == allowed.end()) {
        throw UserError(fmt::format("--command {}: with --{} allowed: {}, {}", command, clusters ? "cluster" : "chip",
                                    allowed[0], allowed[1]));
    }
    if (!a.junit.empty()) throw UserError("--junit: only when comparing two result files (BASE NEW)");
    if (a.drift) throw UserError("--drift: only when comparing two result files (BASE NEW)");
    for (const auto& w : workload) {
        if (w == "--json" || w == "--trace" || w.rfind("--json=", 0) == 0 || w.rfind("--trace=", 0) == 0)
            throw UserError(fmt::format("compare: {}: not allowed here (each config writes its own result)", w));
    }
    // Every config resolves before any runs, so that a misspelt one costs nothing.
    for (const auto& c : configs)
        (void)(clusters ? hw::resolve_cluster_config(c, {}, {}) : hw::resolve_chip_config(c, {}, {}));
    std::vector<SweepPoint> points;
    for (std::size_t i = 0; i < configs.size(); ++i) {
        SweepPoint p;
        p.index = i;
        p.axes = {{clusters ? "cluster" : "chip", configs[i]}};
        p.args = {command};
        p.args.insert(p.args.end(), workload.begin(), workload.end());
        p.args.push_back(clusters ? "--cluster" : "--chip");
        p.args.push_back(configs[i]);
        check_command_args(p.args, "compare");
        points.push_back(std::move(p));
    }
    std::vector<MetricSpec> metrics;
    for (const auto& m : a.metrics) metrics.push_back(parse_metric(m, 0));
    if (metrics.empty()) {
        for (const auto& path : headline_metrics(schema_of_command(command))) metrics.push_back(parse_metric(path, 0));
    }
    std::vector<PointOutcome> outcomes(points.size());
    PointRunnerOptions options;
    options.jobs = a.jobs > 0 ? a.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int signal = run_points(
        points, options, [&](const SweepPoint& p, PointOutcome out) { outcomes[p.index] = std::move(out); }, [] {});
    if (signal != 0) return 128 + signal;

    std::size_t metric_w = 6, col_w = 14;
    for (const auto& m : metrics) metric_w = std::max(metric_w, m.path.size());
    for (const auto& c : configs) col_w = std::max(col_w, c.size());
    std::string cmdline = "trnsim " + command;
    for (const auto& w : workload) cmdline += " " + w;
    std::string out =
        fmt::format("trnsim compare: {} on {} configs (delta against the first)\n", cmdline, configs.size());
    out += fmt::format("  {:<{}}", "metric", metric_w);
    for (const auto& c : configs) out += fmt::format("  {:>{}}", c, col_w + 10);
    out += "\n";
    int failed = 0;
    for (const auto& m : metrics) {
        out += fmt::format("  {:<{}}", m.path, metric_w);
        const ordered_json* first = outcomes[0].ok ? find_path(outcomes[0].result, m.path) : nullptr;
        for (std::size_t i = 0; i < configs.size(); ++i) {
            const ordered_json* v = outcomes[i].ok ? find_path(outcomes[i].result, m.path) : nullptr;
            std::string cell = "-";
            if (v != nullptr && v->is_number()) {
                const double x = v->get<double>();
                cell = fmt::format("{:.6g}", x);
                if (i > 0 && first != nullptr && first->is_number() && first->get<double>() != 0)
                    cell += fmt::format(" ({:+.1f}%)", (x / first->get<double>() - 1) * 100);
            } else if (v != nullptr) {
                cell = v->is_string() ? v->get<std::string>() : v->dump();
            }
            out += fmt::format("  {:>{}}", cell, col_w + 10);
        }
        out += "\n";
    }
    for (std::size_t i = 0; i < configs.size(); ++i) {
        if (outcomes[i].ok) continue;
        ++failed;
        out += fmt::format("  {} failed: {}\n", configs[i], outcomes[i].error);
    }
    std::fputs(out.c_str(), stdout);
    return failed > 0 ? 1 : 0;
}

}  // namespace

std::function<int()> add_compare_command(CLI::App& app) {
    auto a = std::make_shared<CompareArgs>();
    auto* sub = app.add_subcommand(
        "compare",
        "compare two results or sweep outputs (BASE NEW), or run one workload on several configs side by side "
        "(--cluster A --cluster B [run options])");
    // BASE NEW, or with --cluster/--chip the workload's options: both arrive in order as extras (a positional
    // option would swallow the workload's option values).
    sub->allow_extras();
    auto* tolerance = sub->add_option("--tolerance", a->tolerance, "allowed worsening, e.g. 2% (default 0%)");
    sub->add_option("--metric", a->metrics,
                    "PATH[:TOL%][:higher|lower] (repeatable; default: the schema's headline metrics)")
        ->allow_extra_args(false);
    sub->add_option("--junit", a->junit, "write a JUnit XML report (one testcase per point and metric)");
    sub->add_flag("--drift", a->drift,
                  "regression gate: a change beyond the tolerance in either direction fails, and so does a point "
                  "in one file only");
    sub->add_option("--cluster", a->clusters, "a cluster to run the workload on (repeatable)")->allow_extra_args(false);
    sub->add_option("--chip", a->chips, "a chip to run the workload on (repeatable; kernel and mem)")
        ->allow_extra_args(false);
    sub->add_option("--command", a->command, "run|collective (with --cluster), kernel|mem (with --chip)");
    sub->add_option("-j,--jobs", a->jobs, "worker processes for --cluster/--chip (default: the cores)")
        ->check(CLI::Range(1, 4096));
    return [a, sub, tolerance] {
        if (!sub->parsed()) return 2;
        const std::vector<std::string> rest = sub->remaining();
        // Config options after the first workload option still belong to compare.
        std::vector<std::string> workload;
        for (std::size_t i = 0; i < rest.size(); ++i) {
            const std::string& w = rest[i];
            if ((w == "--cluster" || w == "--chip") && i + 1 < rest.size()) {
                (w == "--cluster" ? a->clusters : a->chips).push_back(rest[++i]);
            } else if (w.rfind("--cluster=", 0) == 0) {
                a->clusters.push_back(w.substr(10));
            } else if (w.rfind("--chip=", 0) == 0) {
                a->chips.push_back(w.substr(7));
            } else {
                workload.push_back(w);
            }
        }
        if (a->clusters.empty() && a->chips.empty()) {
            for (const auto& w : workload) {
                if (w.size() > 1 && w[0] == '-')
                    throw UserError(
                        fmt::format("compare: unknown option '{}'; allowed: BASE NEW [--tolerance 2%] "
                                    "[--metric PATH[:TOL%]] [--junit FILE], or --cluster A --cluster B "
                                    "with the options of trnsim run",
                                    w));
            }
            a->files = workload;
            return compare_files(*a);
        }
        if (tolerance->count() > 0) throw UserError("--tolerance: only when comparing two result files (BASE NEW)");
        return compare_configs(*a, workload);
    };
}

}  // namespace trnsim::cli
