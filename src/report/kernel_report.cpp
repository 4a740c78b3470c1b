#include "trnsim/report/kernel_report.h"

#include <cstdio>
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
    j["shape"] = r.shape;
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
    j["hbm"] = {{"read_bytes", r.hbm_read_bytes},
                {"write_bytes", r.hbm_write_bytes},
                {"bandwidth_gbps", r.memory_bandwidth_gbps}};
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

std::string to_table(const runtime::KernelResult& r) {
    std::string shape;
    for (const auto& [k, v] : r.shape) shape += fmt::format("{}{}={}", shape.empty() ? "" : " ", k, v);
    std::string out;
    out += fmt::format("trnsim kernel {} on {} ({}), {}\n", r.op, r.chip, r.dtype, shape);
    out += fmt::format("  {:<22}{} cycles (tensor-engine clock)\n", "time", r.cycles);
    out += fmt::format("  {:<22}{}\n", "", to_string(Duration{r.time_s}));
    out += fmt::format("  {:<22}{:.2f} TFLOPS of {:.2f} peak ({:.1f}%)\n", "throughput", r.achieved_tflops,
                       r.peak_tflops, 100.0 * r.achieved_tflops / r.peak_tflops);
    out += fmt::format("  {:<22}{} cycles, {} MACs\n", "tensor engine", r.tensor_engine_cycles, r.tensor_macs);
    out += "  engine busy           ";
    for (const char* e : {"tensor", "vector", "scalar", "gpsimd", "dma"}) {
        out += fmt::format("{} {:.1f}%  ", e, 100.0 * r.utilization.at(e));
    }
    out += "\n";
    out += fmt::format("  {:<22}read {}  write {}  ({:.1f} GB/s)\n", "HBM", to_string(Bytes{r.hbm_read_bytes}),
                       to_string(Bytes{r.hbm_write_bytes}), r.memory_bandwidth_gbps);
    out += fmt::format("  {:<22}{} of SBUF, {} DMA transfers\n", "on chip", to_string(Bytes{r.sbuf_peak_bytes}),
                       r.dma_transfers);
    if (r.functional) out += fmt::format("  {:<22}{:.3e} (max|y-ref|/max|ref|)\n", "functional error", r.max_rel_error);
    out += fmt::format("  {:<22}{:.3f} s wall, {} events, {:.1f} MiB peak memory\n", "simulator", r.wall_s, r.events,
                       static_cast<double>(r.peak_rss_bytes) / 1048576.0);
    return out;
}

void write_file_atomic(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw UserError(fmt::format("cannot write '{}'", path));
        f << text;
        if (!f) throw UserError(fmt::format("cannot write '{}'", path));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw UserError(fmt::format("cannot write '{}'", path));
    }
}

}  // namespace trnsim::report
