#include "trnsim/hw/tensor_engine.h"

#include <algorithm>

#include "trnsim/core/error.h"

namespace trnsim::hw {

namespace {
constexpr const char* k_prefix = "chip.core.tensor_engine.";

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}
}  // namespace

const char* to_string(Dataflow d) {
    switch (d) {
        case Dataflow::ws: return "ws";
        case Dataflow::os: return "os";
        case Dataflow::is: return "is";
    }
    return "?";
}

void TensorEngineSpec::declare(ParamRegistry& r) {
    const std::string p = k_prefix;
    r.declare({p + "clock", ParamType::frequency, "TensorE clock", std::nullopt, "", {}, 1e6, 1e11});
    r.declare(
        {p + "rows", ParamType::integer, "PE rows (contraction / SBUF partitions)", "128", "[NKI-ARCH1]", {}, 1, 4096});
    r.declare({p + "cols", ParamType::integer, "PE columns (stationary free size)", "128", "[NKI-ARCH1]", {}, 1, 4096});
    r.declare({p + "dataflow",
               ParamType::choice,
               "ws: rhs stationary, lhsT streams (out C^T); is: lhsT stationary, rhs streams (out C); os: output "
               "stationary",
               "ws",
               "[NKI-ARCH1]",
               {"ws", "os", "is"}});
    r.declare({p + "preload",
               ParamType::choice,
               "background: fast LoadStationary into shadow weights during compute; serial: textbook row shift-in",
               "background",
               "[NKI-ARCH1]",
               {"background", "serial"}});
    r.declare({p + "fold_overlap",
               ParamType::choice,
               "pipelined: a new stationary's MultiplyMoving follows the previous one at its initiation interval; "
               "none: it waits for the array to drain",
               "pipelined",
               "[NKI-ARCH1]",
               {"pipelined", "none"}});
    r.declare({p + "mm_init_latency",
               ParamType::integer,
               "MultiplyMoving minimum initiation interval, TensorE cycles (bounded by the stationary's columns)",
               "64",
               "[NKI-ARCH1][NKI-ISA-OLD]",
               {},
               0,
               1e6});
    r.declare({p + "ls_cols_per_cycle",
               ParamType::integer,
               "stationary columns written per cycle by background LoadStationary (fast LS up to 4x)",
               "4",
               "[NKI-ARCH1]",
               {},
               1,
               4096});
    r.declare({p + "fp32_rate",
               ParamType::integer,
               "TensorE cycles per moving vector for FP32 inputs",
               "4",
               "[NKI-ARCH1]",
               {},
               1,
               64});
    r.declare({p + "fp8_k_pack",
               ParamType::integer,
               "FP8 contraction elements per PE row: 1 (Trn1 cFP8 at BF16 rate), 2 (Trn2 double-row), 4 (Trn3 MX quad)",
               std::nullopt,
               "",
               {},
               1,
               4});
    r.declare({p + "moving_max",
               ParamType::integer,
               "largest moving free size per MultiplyMoving (one PSUM bank of FP32)",
               "512",
               "[NKI-ARCH1]",
               {},
               1,
               1 << 20});
}

TensorEngineSpec TensorEngineSpec::from_config(const Config& c) {
    const std::string p = k_prefix;
    TensorEngineSpec s;
    s.clock = c.get_frequency(p + "clock");
    s.rows = static_cast<int>(c.get_int(p + "rows"));
    s.cols = static_cast<int>(c.get_int(p + "cols"));
    const auto df = c.get_text(p + "dataflow");
    s.dataflow = df == "os" ? Dataflow::os : df == "is" ? Dataflow::is : Dataflow::ws;
    s.preload = c.get_text(p + "preload") == "serial" ? Preload::serial : Preload::background;
    s.fold_overlap = c.get_text(p + "fold_overlap") == "none" ? FoldOverlap::none : FoldOverlap::pipelined;
    s.mm_init_latency = static_cast<int>(c.get_int(p + "mm_init_latency"));
    s.ls_cols_per_cycle = static_cast<int>(c.get_int(p + "ls_cols_per_cycle"));
    s.fp32_rate = static_cast<int>(c.get_int(p + "fp32_rate"));
    s.fp8_k_pack = static_cast<int>(c.get_int(p + "fp8_k_pack"));
    if (s.fp8_k_pack == 3) throw UserError(p + "fp8_k_pack = 3: allowed 1, 2 or 4");
    s.moving_max = static_cast<int>(c.get_int(p + "moving_max"));
    return s;
}

TensorEngine::TensorEngine(const TensorEngineSpec& spec) : m_spec(spec) {}

EngineTiming TensorEngine::load_stationary(const MatmulShape& sh, std::int64_t earliest) {
    EngineTiming t;
    const int k_used = static_cast<int>(ceil_div(sh.k, sh.pack));
    if (m_spec.preload == Preload::background) {
        // The shadow weights are free once the latest MultiplyMoving has started its swap wave.
        t.start = std::max({earliest, m_ls_port_free, m_last_mm_start});
        t.busy = sh.rate * ceil_div(sh.c, m_spec.ls_cols_per_cycle);
    } else {
        // Shifting rows down disturbs every PE: the array must be empty.
        t.start = std::max({earliest, m_drained, m_ls_end});
        t.busy = k_used;
    }
    t.end = t.start + t.busy;
    m_ls_port_free = t.end;
    m_ls_end = t.end;
    m_weights_ready = t.end;
    m_new_stationary = true;
    m_k_used = k_used;
    m_c_used = sh.c;
    return t;
}

EngineTiming TensorEngine::multiply_moving(const MatmulShape& sh, std::int64_t earliest, int psum_bank) {
    EngineTiming t;
    t.start = std::max({earliest, m_mm_port_free, m_weights_ready});
    if (m_spec.fold_overlap == FoldOverlap::none && m_new_stationary) t.start = std::max(t.start, m_drained);
    // Result (c, n) reaches PSUM at start + rate*n + K_used + c - 1: keep per-bank write order.
    t.start = order_after_writers(psum_bank, t.start, m_k_used, sh.rate, sh.n);
    const std::int64_t init = std::min<std::int64_t>(m_spec.mm_init_latency, m_c_used);
    t.busy = sh.rate * std::max<std::int64_t>(sh.n, init);
    t.end = t.start + static_cast<std::int64_t>(sh.rate) * (sh.n - 1) + m_k_used + m_c_used - 1;
    m_mm_port_free = t.start + t.busy;
    m_last_mm_start = t.start;
    m_drained = std::max(m_drained, t.end);
    m_new_stationary = false;
    m_writing[psum_bank].push_back({t.start, t.end, m_k_used, sh.rate, sh.n});
    return t;
}

std::int64_t TensorEngine::order_after_writers(int bank, std::int64_t start, int k_used, int rate, int n) {
    auto& writers = m_writing[bank];
    // A finished writer never constrains (its bound is below its end); drop those.
    writers.erase(std::remove_if(writers.begin(), writers.end(), [start](const InFlight& w) { return w.end <= start; }),
                  writers.end());
    for (const auto& w : writers) {
        const std::int64_t slower =
            std::max<std::int64_t>(0, static_cast<std::int64_t>(w.rate - rate) * (std::min(w.n, n) - 1));
        start = std::max(start, w.start + w.k_used - k_used + 1 + slower);
    }
    return start;
}

EngineTiming TensorEngine::matmul_os(const MatmulShape& sh, std::int64_t earliest, int psum_bank) {
    // Both operands stream T = K elements, skewed over R rows and C columns; the R x C accumulators then
    // drain down the columns (R cycles). Pipelined folds assume double-buffered accumulators.
    EngineTiming t;
    t.start = std::max(earliest, m_mm_port_free);
    if (m_spec.fold_overlap == FoldOverlap::none) t.start = std::max(t.start, m_drained);
    const std::int64_t k_stream = ceil_div(sh.k, sh.pack);
    t.busy = sh.rate * k_stream;
    const std::int64_t span = static_cast<std::int64_t>(sh.rate) * (k_stream - 1) + 2LL * sh.r + sh.c - 1;
    // Accumulating into a bank an earlier fold still drains into: its drain lands after that one's.
    for (const auto& w : m_writing[psum_bank]) t.start = std::max(t.start, w.end - span + 1);
    t.end = t.start + span;
    m_mm_port_free = t.start + t.busy;
    m_last_mm_start = t.start;
    m_drained = std::max(m_drained, t.end);
    auto& writers = m_writing[psum_bank];
    writers.clear();
    writers.push_back({t.start, t.end, 0, sh.rate, 0});
    return t;
}

}  // namespace trnsim::hw
