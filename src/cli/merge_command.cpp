#include <cstdio>
#include <map>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "commands.h"
#include "sweep_records.h"
#include "trnsim/core/error.h"
#include "trnsim/core/process.h"
#include "trnsim/report/kernel_report.h"

namespace trnsim::cli {

namespace {

struct MergeArgs {
    std::vector<std::string> inputs;
    std::string output;
    bool partial = false;
};

std::vector<std::string> keys_of(const ordered_json& axes) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : axes.items()) keys.push_back(k);
    return keys;
}

bool is_sim_file(const std::string& path) {
    constexpr std::string_view suffix = ".sim.jsonl";
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The shards' STEM.sim.jsonl (the simulator's own cost per point), joined in point order.
std::string merge_sim_files(const std::vector<std::string>& inputs) {
    std::map<std::size_t, std::pair<std::string, std::string>> lines;  // point -> (line, file)
    for (const auto& path : inputs) {
        const std::optional<std::string> text = read_file(path);
        if (!text) throw UserError(fmt::format("cannot read '{}'", path));
        std::size_t at = 0, number = 0;
        while (at < text->size()) {
            const std::size_t end = text->find('\n', at);
            ++number;
            if (end == std::string::npos) {
                // A shard interrupted while writing a point's cost, which --resume does not redo when the point's
                // record was written (host costs only: the results are in the records).
                std::fprintf(stderr, "trnsim merge: %s: its last line is incomplete (an interrupted shard); left out\n",
                             path.c_str());
                break;
            }
            const std::string line = text->substr(at, end - at);
            at = end + 1;
            const auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.contains("point") || !j["point"].is_number_unsigned())
                throw UserError(
                    fmt::format("{}: line {} is not a simulator-cost record of trnsim sweep", path, number));
            const auto point = j["point"].get<std::size_t>();
            const auto [it, fresh] = lines.emplace(point, std::make_pair(line, path));
            if (!fresh) {
                throw UserError(
                    fmt::format("{} line {}: point {} is also in {}; allowed: the shards' .sim.jsonl files, "
                                "each point in one of them",
                                path, number, point, it->second.second));
            }
        }
    }
    std::string out;
    for (const auto& [point, entry] : lines) out += entry.first + "\n";
    return out;
}

int run_merge(const MergeArgs& args) {
    // The shards' simulator-cost files (which a glob such as shard*.jsonl takes too) go to OUT.sim.jsonl.
    MergeArgs a = args;
    std::vector<std::string> sim_inputs;
    a.inputs.clear();
    for (const auto& path : args.inputs) (is_sim_file(path) ? sim_inputs : a.inputs).push_back(path);
    report::check_writable(a.output, "-o");
    const std::string csv_path = output_stem(a.output) + ".csv";
    report::check_writable(csv_path, "-o");
    const std::string sim_path = output_stem(a.output) + ".sim.jsonl";
    if (!sim_inputs.empty()) report::check_writable(sim_path, "-o");
    const std::string sim_text = merge_sim_files(sim_inputs);
    // Where each point's record is, and its CSV row: the records themselves are copied from the inputs at
    // the end, so that a sweep too large to hold in memory merges all the same.
    struct Entry {
        std::size_t file;
        LineSpan line;
        std::string csv;
        bool ok;
    };
    std::map<std::size_t, Entry> points;
    std::optional<ordered_json> first;  // the first record: the sweep the others must belong to
    std::string first_file, schema;
    for (std::size_t f = 0; f < a.inputs.size(); ++f) {
        const std::string& path = a.inputs[f];
        const ScanEnd end = scan_records(path, [&](ordered_json&& r, const LineSpan& at, const std::string&) {
            const std::size_t index = r["point"].get<std::size_t>();
            if (!first) {
                first = r;
                first_file = path;
                schema = record_schema(r);
            } else if (r["points"] != (*first)["points"] || r["args"].at(0) != (*first)["args"].at(0) ||
                       keys_of(r["axes"]) != keys_of((*first)["axes"])) {
                throw UserError(
                    fmt::format("{} line {}: point {} is from another sweep than {} (its command, axes or point count "
                                "differ); allowed: the shard outputs of one sweep file",
                                path, at.line, index, first_file));
            }
            const auto it = points.find(index);
            if (it != points.end()) {
                throw UserError(
                    fmt::format("{} line {}: point {} is also in {}; allowed: shard outputs of one sweep, "
                                "each point in one of them",
                                path, at.line, index, a.inputs[it->second.file]));
            }
            points[index] = Entry{f, at, csv_row(r, schema), r["status"] == "ok"};
        });
        if (end.truncated_tail) {
            throw UserError(
                fmt::format("{}: its last line is incomplete (the shard was interrupted); allowed: finish "
                            "it with trnsim sweep --resume, then merge",
                            path));
        }
    }
    if (!first) throw UserError("merge: the inputs hold no records; allowed: outputs of trnsim sweep");
    const std::size_t total = (*first)["points"].get<std::size_t>();
    if (points.size() != total && !a.partial) {
        std::string missing;
        std::size_t shown = 0;
        for (std::size_t i = 0; i < total && shown < 10; ++i) {
            if (points.count(i)) continue;
            missing += (missing.empty() ? "" : ", ") + std::to_string(i);
            ++shown;
        }
        throw UserError(
            fmt::format("merge: {} of the sweep's {} points are missing (points {}{}); allowed: the "
                        "outputs of every shard, or --partial",
                        total - points.size(), total, missing, total - points.size() > shown ? ", ..." : ""));
    }
    const std::vector<std::string> axis_keys = keys_of((*first)["axes"]);
    std::string rows = csv_header(axis_keys, schema);
    std::size_t failed = 0;
    {
        report::AtomicFile merged(a.output);
        // The inputs stay open while they are read in turn (shards hold every N-th point), a bounded number.
        constexpr std::size_t k_open_max = 64;
        std::map<std::size_t, std::ifstream> open;
        for (const auto& [i, e] : points) {
            auto it = open.find(e.file);
            if (it == open.end()) {
                if (open.size() == k_open_max) open.clear();
                it = open.emplace(e.file, open_records(a.inputs[e.file])).first;
            }
            copy_line(it->second, a.inputs[e.file], e.line, merged);
            rows += e.csv;
            failed += e.ok ? 0 : 1;
        }
        merged.commit();
    }
    report::write_file_atomic(csv_path, rows);
    if (!sim_inputs.empty()) report::write_file_atomic(sim_path, sim_text);
    std::printf("trnsim merge: %zu of %zu points from %zu files, %zu failed: %s, %s%s\n", points.size(), total,
                a.inputs.size(), failed, a.output.c_str(), csv_path.c_str(),
                sim_inputs.empty() ? "" : (", " + sim_path).c_str());
    return 0;
}

}  // namespace

std::function<int()> add_merge_command(CLI::App& app) {
    auto a = std::make_shared<MergeArgs>();
    auto* sub = app.add_subcommand("merge", "join the outputs of a sweep's shards into the output of the whole sweep");
    sub->add_option("inputs", a->inputs,
                    "JSON Lines outputs of trnsim sweep --shard K/N (their STEM.sim.jsonl too, joined apart)")
        ->required();
    sub->add_option("-o,--output", a->output, "the merged JSON Lines (and STEM.csv, STEM.sim.jsonl)")->required();
    sub->add_flag("--partial", a->partial, "merge even when points are missing");
    return [a, sub] {
        if (!sub->parsed()) return 2;
        return run_merge(*a);
    };
}

}  // namespace trnsim::cli
