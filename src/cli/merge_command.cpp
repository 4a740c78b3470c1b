#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "commands.h"
#include "sweep_records.h"
#include "trnsim/core/error.h"
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

int run_merge(const MergeArgs& a) {
    report::check_writable(a.output, "-o");
    const std::string csv_path = output_stem(a.output) + ".csv";
    report::check_writable(csv_path, "-o");
    struct Entry {
        std::string line, file;
        ordered_json record;
    };
    std::map<std::size_t, Entry> points;
    const ordered_json* first = nullptr;
    std::string first_file;
    std::vector<RecordFile> files;
    files.reserve(a.inputs.size());
    for (const auto& path : a.inputs) {
        files.push_back(read_records(path));
        const RecordFile& f = files.back();
        if (f.truncated_tail) {
            throw UserError(
                fmt::format("{}: its last line is incomplete (the shard was interrupted); allowed: finish "
                            "it with trnsim sweep --resume, then merge",
                            path));
        }
        for (std::size_t i = 0; i < f.records.size(); ++i) {
            const ordered_json& r = f.records[i];
            const std::size_t index = r["point"].get<std::size_t>();
            if (first == nullptr) {
                first = &r;
                first_file = path;
            } else if (r["points"] != (*first)["points"] || r["args"].at(0) != (*first)["args"].at(0) ||
                       keys_of(r["axes"]) != keys_of((*first)["axes"])) {
                throw UserError(
                    fmt::format("{} line {}: point {} is from another sweep than {} (its command, axes or point count "
                                "differ); allowed: the shard outputs of one sweep file",
                                path, i + 1, index, first_file));
            }
            const auto it = points.find(index);
            if (it != points.end()) {
                throw UserError(
                    fmt::format("{} line {}: point {} is also in {}; allowed: shard outputs of one sweep, "
                                "each point in one of them",
                                path, i + 1, index, it->second.file));
            }
            points[index] = Entry{f.lines[i], path, r};
        }
    }
    if (first == nullptr) throw UserError("merge: the inputs hold no records; allowed: outputs of trnsim sweep");
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
    const std::string schema = record_schema(*first);
    const std::vector<std::string> axis_keys = keys_of((*first)["axes"]);
    std::string lines, rows = csv_header(axis_keys, schema);
    std::size_t failed = 0;
    for (const auto& [i, e] : points) {
        lines += e.line;
        rows += csv_row(e.record, schema);
        failed += e.record["status"] == "ok" ? 0 : 1;
    }
    report::write_file_atomic(a.output, lines);
    report::write_file_atomic(csv_path, rows);
    std::printf("trnsim merge: %zu of %zu points from %zu files, %zu failed: %s, %s\n", points.size(), total,
                a.inputs.size(), failed, a.output.c_str(), csv_path.c_str());
    return 0;
}

}  // namespace

std::function<int()> add_merge_command(CLI::App& app) {
    auto a = std::make_shared<MergeArgs>();
    auto* sub = app.add_subcommand("merge", "join the outputs of a sweep's shards into the output of the whole sweep");
    sub->add_option("inputs", a->inputs, "JSON Lines outputs of trnsim sweep --shard K/N")->required();
    sub->add_option("-o,--output", a->output, "the merged JSON Lines (and STEM.csv)")->required();
    sub->add_flag("--partial", a->partial, "merge even when points are missing");
    return [a, sub] {
        if (!sub->parsed()) return 2;
        return run_merge(*a);
    };
}

}  // namespace trnsim::cli
