#pragma once
// The records of a sweep (docs/sweeps.md): one JSON line per point, appended atomically as points finish; the
// CSV rendering of the same records; reading them back (resume, merge, compare).
//
// A record: {"point": i, "points": total, "axes": {key: value, ...}, "args": [command, arguments...],
//            "status": "ok" | "failed", "result": {...} | "error": "message"}.
// It holds nothing that depends on the host, the run or the sharding (the result's "sim" object, the
// simulator's own cost, goes to a separate log), so that shards merge into exactly the unsharded output.

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "metrics.h"
#include "sweep_spec.h"
#include "trnsim/report/kernel_report.h"

namespace trnsim::cli {

ordered_json ok_record(const SweepPoint& point, std::size_t total, ordered_json result);
ordered_json failed_record(const SweepPoint& point, std::size_t total, const std::string& error);

// One line of JSONL (compact, ending in '\n').
std::string record_line(const ordered_json& record);

// The schema of a record's result, from its command: "trnsim.mem/1".
std::string record_schema(const ordered_json& record);

struct RecordFile {
    std::vector<ordered_json> records;  // in file order
    std::vector<std::string> lines;     // the same records as written, each with its '\n'
    std::size_t complete_bytes = 0;     // the length of the complete lines
    bool truncated_tail = false;        // the file ends in a line without '\n' (an append cut short)
};

// Reads a JSONL file of records. A last line without '\n' is reported in truncated_tail and not parsed; any
// other line that is not a record is a UserError naming the file and line.
RecordFile read_records(const std::string& path);

// The same one record at a time, for files too large to hold: each complete line's record, where the line is
// in the file, and its text (with its '\n').
struct LineSpan {
    std::uint64_t offset = 0, length = 0;  // bytes, the '\n' included
    std::size_t line = 0;                  // 1-based
};
struct ScanEnd {
    std::uint64_t complete_bytes = 0;  // the length of the complete lines
    bool truncated_tail = false;       // the file ends in a line without '\n' (an append cut short)
};
using RecordVisitor = std::function<void(ordered_json&& record, const LineSpan& where, const std::string& text)>;
ScanEnd scan_records(const std::string& path, const RecordVisitor& visit);

// Opens a records file for reading (UserError naming it if it can't), and copies the line at `span` of it
// (`path` names it in errors) to `out`.
std::ifstream open_records(const std::string& path);
void copy_line(std::istream& in, const std::string& path, const LineSpan& span, report::AtomicFile& out);

// Appends `text` with one write() to a file opened with O_APPEND and makes it durable (fsync).
void append_durable(int fd, const std::string& text, const std::string& path);

// CSV: point, the axis values, status, the headline metrics of the schema, error. The header comes from the
// axis keys and the schema.
std::string csv_header(const std::vector<std::string>& axis_keys, const std::string& schema);
std::string csv_row(const ordered_json& record, const std::string& schema);
std::string csv_text(const std::vector<ordered_json>& records, const std::vector<std::string>& axis_keys,
                     const std::string& schema);

// The output files of a sweep writing `jsonl`: STEM.csv and STEM.sim.jsonl (STEM: jsonl without ".jsonl").
std::string output_stem(const std::string& jsonl);

}  // namespace trnsim::cli
