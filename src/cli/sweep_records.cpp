#include "sweep_records.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::cli {

namespace {

ordered_json record_head(const SweepPoint& point, std::size_t total) {
    ordered_json r;
    r["point"] = point.index;
    r["points"] = total;
    ordered_json axes = ordered_json::object();
    for (const auto& [k, v] : point.axes) axes[k] = v;
    r["axes"] = axes;
    r["args"] = point.args;
    return r;
}

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

std::string csv_value(const ordered_json* v) {
    if (v == nullptr || v->is_null()) return "";
    if (v->is_string()) return csv_field(v->get<std::string>());
    if (v->is_primitive()) return csv_field(v->dump());
    return "";
}

}  // namespace

ordered_json ok_record(const SweepPoint& point, std::size_t total, ordered_json result) {
    ordered_json r = record_head(point, total);
    r["status"] = "ok";
    r["result"] = std::move(result);
    return r;
}

ordered_json failed_record(const SweepPoint& point, std::size_t total, const std::string& error) {
    ordered_json r = record_head(point, total);
    r["status"] = "failed";
    r["error"] = error;
    return r;
}

std::string record_line(const ordered_json& record) {
    return record.dump() + "\n";
}

std::string record_schema(const ordered_json& record) {
    const auto& args = record.at("args");
    return args.empty() ? "" : schema_of_command(args.at(0).get<std::string>());
}

ScanEnd scan_records(const std::string& path, const RecordVisitor& fn) {
    std::ifstream in = open_records(path);
    ScanEnd end;
    std::string text;
    for (std::size_t line = 1; std::getline(in, text); ++line) {
        if (in.eof()) {  // no '\n' after it: an append cut short
            end.truncated_tail = !text.empty();
            break;
        }
        try {
            ordered_json r = ordered_json::parse(text);
            if (!r.is_object() || !r.contains("point") || !r.contains("axes") || !r.contains("args") ||
                !r.contains("status") || !r["point"].is_number_unsigned() || !r["axes"].is_object())
                throw std::runtime_error("not a sweep record");
            text += '\n';
            fn(std::move(r), LineSpan{end.complete_bytes, text.size(), line}, text);
        } catch (const UserError&) {
            throw;
        } catch (const std::exception&) {
            throw UserError(
                fmt::format("{}: line {} is not a sweep record (trnsim sweep writes one JSON object per "
                            "line with point, axes, args, status)",
                            path, line));
        }
        end.complete_bytes += text.size();
    }
    return end;
}

RecordFile read_records(const std::string& path) {
    RecordFile out;
    const ScanEnd end = scan_records(path, [&](ordered_json&& r, const LineSpan&, const std::string& text) {
        out.lines.push_back(text);
        out.records.push_back(std::move(r));
    });
    out.complete_bytes = end.complete_bytes;
    out.truncated_tail = end.truncated_tail;
    return out;
}

void copy_line(std::istream& in, const std::string& path, const LineSpan& span, report::AtomicFile& out) {
    std::string buf(span.length, '\0');
    in.seekg(static_cast<std::streamoff>(span.offset));
    if (!in.read(buf.data(), static_cast<std::streamsize>(span.length)) || buf.empty() || buf.back() != '\n')
        throw UserError(fmt::format("{}: changed while it was read (line {})", path, span.line));
    out.write(buf);
}

std::ifstream open_records(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(fmt::format("{}: cannot read it (no such file, or not readable)", path));
    return in;
}

void append_durable(int fd, const std::string& text, const std::string& path) {
    if (const int error = report::write_all(fd, text))
        throw UserError(fmt::format("cannot append to '{}': {}", path, std::strerror(error)));
    ::fsync(fd);
}

std::string csv_header(const std::vector<std::string>& axis_keys, const std::string& schema) {
    std::string out = "point";
    for (const auto& k : axis_keys) out += "," + csv_field(k);
    out += ",status";
    for (const auto& m : headline_metrics(schema)) out += "," + m;
    return out + ",error\n";
}

std::string csv_row(const ordered_json& record, const std::string& schema) {
    std::string out = record.at("point").dump();
    for (const auto& [k, v] : record.at("axes").items()) out += "," + csv_value(&v);
    out += "," + record.at("status").get<std::string>();
    const bool ok = record.contains("result");
    for (const auto& m : headline_metrics(schema)) out += "," + (ok ? csv_value(find_path(record["result"], m)) : "");
    out += "," + (record.contains("error") ? csv_value(&record["error"]) : "");
    return out + "\n";
}

std::string csv_text(const std::vector<ordered_json>& records, const std::vector<std::string>& axis_keys,
                     const std::string& schema) {
    std::string out = csv_header(axis_keys, schema);
    for (const auto& r : records) out += csv_row(r, schema);
    return out;
}

std::string output_stem(const std::string& jsonl) {
    const std::string ext = ".jsonl";
    if (jsonl.size() > ext.size() && jsonl.compare(jsonl.size() - ext.size(), ext.size(), ext) == 0)
        return jsonl.substr(0, jsonl.size() - ext.size());
    return jsonl;
}

}  // namespace trnsim::cli
