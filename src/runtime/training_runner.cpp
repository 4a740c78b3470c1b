#include "trnsim/runtime/training_runner.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <systemc>

#include "trnsim/core/error.h"
#include "trnsim/core/process.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/hw/hbm_tl_memory.h"
#include "trnsim/hw/topology.h"
#include "trnsim/hw/wakeup.h"
#include "trnsim/lowering/kernel.h"
#include "trnsim/runtime/collective_engine.h"
#include "trnsim/runtime/kernel_cache.h"
#include "trnsim/workload/placement.h"
#include "trnsim/workload/program.h"

namespace trnsim::runtime {

namespace {

using workload::CommGroup;
using workload::CommKind;
using workload::Op;
using workload::OpList;
using workload::StageProgram;

// How one compute op is timed: kernels (each `count` times, one after another) or a stream.
struct OpCost {
    std::vector<lowering::KernelRequest> kernels;
    std::vector<double> counts;
    // Of counts x lnc pieces, the share that is work: the timed core may run more than the mean (a flash op's
    // heads do not divide among the physical cores), and energy goes with the work.
    double work_share = 1;
    bool stream = false;
    std::uint64_t stream_fs = 0;
};

// Femtoseconds of an op's time; a user error when it alone passes the simulated clock's range.
std::uint64_t op_fs(double seconds, const std::string& op) {
    if (!(seconds * 1e15 < 0x1p63))
        throw UserError(fmt::format("op {} takes {:.4g} s, past {}", op, seconds, hw::clock_range_text()));
    return static_cast<std::uint64_t>(std::llround(seconds * 1e15));
}

// Waits `fs` of simulated time; past the clock's range (hw::past_clock) the simulation stops instead, and the
// thread waits for a delta cycle that does not come.
void wait_fs(std::uint64_t fs) {
    if (hw::past_clock(sc_core::sc_time_stamp().value(), fs)) {
        stop_simulation(hw::past_clock_message());
        sc_core::wait(sc_core::SC_ZERO_TIME);
        return;
    }
    sc_core::wait(sc_core::sc_time::from_value(fs));
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

// Whether the lowering can tile a kernel into this chip's SBUF and PSUM (memoized by shape).
bool fits(const lowering::KernelRequest& r, const hw::ChipSpec& chip) {
    static std::map<std::string, bool> known;
    const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", chip.name, r.op, r.m, r.k, r.n, r.rows,
                                        r.cols, static_cast<int>(r.dtype), r.causal, r.q_offset, r.dropout);
    const auto it = known.find(key);
    if (it != known.end()) return it->second;
    bool ok = true;
    try {
        (void)lowering::lower_kernel(r, chip);
    } catch (const UserError&) {
        ok = false;
    }
    return known[key] = ok;
}

// A flash-attention op runs one kernel per head (batch entry); a logical core's physical cores take the heads
// in turn. With fewer heads than physical cores (c = lnc / batch cores per head), each core takes a share of a
// head's queries: under the causal mask the queries are cut into 2c equal chunks and core j takes chunks j and
// 2c - 1 - j (the zigzag split of context-parallel attention, which gives every core the same number of
// scores), and the core holding the first and the last chunk is timed; without the mask, c equal contiguous
// shares. A kernel whose resident side does not fit in SBUF is timed as the fewest equal query pieces (1, 2,
// 4, ..., at least 128 queries each) of each range that fit, one after another, each against the keys it sees.
OpCost flash_cost(const workload::KernelDesc& k, const hw::ChipSpec& chip) {
    OpCost c;
    const std::int64_t lnc = chip.lnc;
    const std::int64_t per_core = ceil_div(k.batch, lnc);
    const std::int64_t shares = k.batch >= lnc ? 1 : lnc / k.batch;
    if (shares == 1) c.work_share = static_cast<double>(k.batch) / static_cast<double>(per_core * lnc);
    // The timed core's query ranges [first, last) (queries are the last k.m positions of the keys' sequence).
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
    if (shares == 1) {
        ranges = {{0, k.m}};
    } else if (k.causal) {
        const std::int64_t chunk = ceil_div(k.m, 2 * shares);
        ranges = {{0, chunk}, {std::max(chunk, k.m - chunk), k.m}};
    } else {
        ranges = {{0, ceil_div(k.m, shares)}};
    }
    lowering::KernelRequest r;
    r.op = k.op;
    r.dtype = k.dtype;
    r.k = k.k;
    r.causal = k.causal;
    r.dropout = k.dropout;
    auto shape = [&](std::int64_t a, std::int64_t len) {
        r.m = len;
        r.q_offset = k.causal ? a + (k.n - k.m) : 0;
        r.n = k.causal ? r.q_offset + r.m : k.n;
    };
    const std::int64_t longest = ranges.back().second - ranges.back().first;
    for (std::int64_t pieces = 1; pieces == 1 || pieces <= longest / 128; pieces *= 2) {
        std::vector<lowering::KernelRequest> all;
        bool ok = true;
        for (const auto& [first, last] : ranges) {
            const std::int64_t len = ceil_div(last - first, pieces);
            for (std::int64_t a = first; ok && a < last; a += len) {
                shape(a, std::min(len, last - a));
                ok = fits(r, chip);
                all.push_back(r);
            }
        }
        if (!ok) continue;
        for (const auto& x : all) {
            c.kernels.push_back(x);
            c.counts.push_back(static_cast<double>(per_core));
        }
        return c;
    }
    // No split fits: the lowering says why (a head dimension beyond the array, an SBUF too small).
    shape(ranges.back().first, longest);
    (void)lowering::lower_kernel(r, chip);
    throw std::logic_error("flash_cost: the lowering refuses every split of a flash kernel but not the whole");
}

// A logical core of `lnc` physical cores runs a kernel as `lnc` pieces side by side, each one physical
// core's share (GEMM: the larger of M and N split; row-wise: the rows split). A kernel the lowering cannot
// keep resident in SBUF (a GEMM's moving block over K, a row-wise op's row tiles over the columns) is timed
// as the fewest equal pieces along K or the columns that fit, one after another.
OpCost op_cost(const Op& op, const hw::ChipSpec& chip) {
    OpCost c;
    const workload::KernelDesc& k = op.kernel;
    const std::int64_t lnc = chip.lnc;
    if (k.op == "stream") {
        c.stream = true;
        const double bytes = k.bytes_read + k.bytes_written;
        const double bw = static_cast<double>(lnc) * chip.core.dma.engines * chip.core.dma.engine_bandwidth.bytes_per_s;
        c.stream_fs = op_fs(bytes / bw, op.name) + op_fs(chip.core.dma.transfer_latency.seconds, op.name);
        return c;
    }
    if (op.is_flash()) return flash_cost(k, chip);
    lowering::KernelRequest r;
    r.op = k.op;
    r.dtype = k.dtype;
    const bool gemm = k.op == "gemm";
    if (gemm) {
        r.m = k.m;
        r.n = k.n;
        if (r.m >= r.n)
            r.m = ceil_div(r.m, lnc);
        else
            r.n = ceil_div(r.n, lnc);
    } else {
        r.rows = ceil_div(k.rows, lnc);
    }
    const std::int64_t extent = gemm ? k.k : k.cols;
    for (std::int64_t pieces = 1; pieces <= extent; ++pieces) {
        (gemm ? r.k : r.cols) = ceil_div(extent, pieces);
        if (fits(r, chip)) {
            c.kernels.push_back(r);
            c.counts.push_back(static_cast<double>((gemm ? k.batch : k.passes) * pieces));
            return c;
        }
    }
    // No split fits: the kernel is refused for another reason (a dtype the chip lacks, say); the lowering says which.
    (gemm ? r.k : r.cols) = extent;
    (void)lowering::lower_kernel(r, chip);
    throw std::logic_error("op_cost: the lowering refuses every split of " + op.name + " but not the whole");
}

std::string op_class(const Op& op) {
    if (op.phase == workload::Phase::optimizer) return "optimizer";
    const std::string& k = op.kernel.op;
    if (k == "gemm") return op.kernel.batch > 1 ? "attention" : "gemm";
    if (k == "softmax" || op.is_flash()) return "attention";
    if (k == "layernorm" || k == "rmsnorm") return "norm";
    if (k == "gelu" || k == "silu") return "activation";
    return "elementwise";
}

CollectiveOp collective_of(CommKind k) {
    switch (k) {
        case CommKind::all_reduce: return CollectiveOp::all_reduce;
        case CommKind::reduce_scatter: return CollectiveOp::reduce_scatter;
        case CommKind::all_gather: return CollectiveOp::all_gather;
        default: throw std::logic_error("not a collective");
    }
}

// Everything a simulation needs, prepared in the parent (no SystemC).
struct Setup {
    TrainingOptions options;
    workload::ModelSpec model;
    std::vector<StageProgram> stages;
    workload::Placement placement{1, 1, 1};
    // Durations (fs) and classes of every compute op: [stage][list][op]; lists per stage: chunk c forward
    // at 2c, backward at 2c + 1, the step list last.
    std::vector<std::vector<std::vector<std::uint64_t>>> fs;
    std::vector<std::vector<std::vector<std::string>>> cls;
    // The share of its core's DMA engine time each compute op takes (its kernels' DMA utilization,
    // time-weighted; a stream op: 1).
    std::vector<std::vector<std::vector<double>>> dma;
    // And the share of the chip memory's time it takes, per rank of the chip (its HBM reads and writes at the
    // rates the collectives' memory serves them, times the chip's ranks, over its time; 0 with
    // cluster.memory_model ideal, which the kernels do not share).
    std::vector<std::vector<std::vector<double>>> memory;
    // And its kernels' utilization of the tensor, vector, scalar and gpsimd engines, time-weighted (for the
    // trace).
    std::vector<std::vector<std::vector<std::array<double, 4>>>> engines;
};

constexpr std::array<const char*, 4> k_engines{"tensor", "vector", "scalar", "gpsimd"};

const OpList& list_of(const StageProgram& p, std::size_t list) {
    if (list == 2 * p.chunks.size()) return p.step;
    const auto& chunk = p.chunks[list / 2];
    return list % 2 == 0 ? chunk.forward : chunk.backward;
}

std::size_t list_count(const StageProgram& p) {
    return 2 * p.chunks.size() + 1;
}

// ---- one simulation ----------------------------------------------------------------------------------

struct SimOutcome {
    std::vector<TraceEvent> trace;
    std::vector<TraceCounter> counters;
    std::vector<std::string> tracks;
    double step_s = 0;
    double link_bytes = 0, efa_bytes = 0;  // summed over every link a byte crossed
    double memory_bytes = 0;               // collectives' reads and writes of chip memory, every chip
    std::vector<StageBreakdown> stages;
    std::uint64_t collectives = 0, transfers = 0;
    std::uint64_t replayed = 0, simulated = 0;  // busy periods of the collective engine (docs/adr/0006)
    std::uint64_t mirrored = 0;                 // of the simulated, those with mirrored parts (docs/adr/0009)
    std::uint64_t events = 0;                   // model wake-ups (hw::WakeupQueue) of this simulation
};

constexpr std::uint64_t k_never = ~std::uint64_t{0};

// Megatron-LM's interleaved 1F1B: the forward passes (of one model chunk each) that stage s of pp runs before
// its first backward, with v chunks per stage (schedules.py forward_backward_pipelining_with_interleaving).
std::int64_t interleaved_warmup(std::int64_t pp, std::int64_t s, std::int64_t v) {
    return (pp - s - 1) * 2 + (v - 1) * pp;
}

class StepSimulation {
public:
    StepSimulation(const Setup& setup, const Config& config, std::int64_t microbatches, bool trace, bool memo,
                   const std::set<std::string>& skip)
        : m_trace_on(trace),
          m_setup(setup),
          m_spec(hw::ClusterSpec::from_config(config)),
          m_cluster("cluster", m_spec, config),
          m_engine(m_cluster),
          m_m(microbatches),
          m_wakeups_at_start(hw::WakeupQueue::wakeups()) {
        if (memo) m_engine.enable_memo(skip);
        const int pp = static_cast<int>(setup.stages.size());
        for (int s = 0; s < pp; ++s) m_stage.emplace_back();
        // Each stage's chips, and the share of each chip's ranks in each stage (for the kernels' load).
        m_stage_chips.resize(static_cast<std::size_t>(pp));
        m_stage_load.assign(static_cast<std::size_t>(pp), hw::KernelLoad{});
        m_stage_until.assign(static_cast<std::size_t>(pp), k_never);
        const double per_chip = static_cast<double>(m_spec.ranks_per_chip);
        for (int r = 0; r < setup.placement.ranks(); ++r) {
            const int s = setup.placement.coord(r).pp;
            const int c = m_engine.chip_of_rank(r);
            auto& chips = m_stage_chips[static_cast<std::size_t>(s)];
            if (std::find(chips.begin(), chips.end(), c) == chips.end()) chips.push_back(c);
            m_chip_share[c][s] += 1.0 / per_chip;
        }
        for (auto& chips : m_stage_chips) std::sort(chips.begin(), chips.end());
        // Pipeline sends: which stages each stage sends to, and, from each op list of its order on, the least
        // compute it runs before its next send to each stage (a bound on how soon it can send there).
        m_sends_to.resize(static_cast<std::size_t>(pp));
        m_send_after.resize(static_cast<std::size_t>(pp));
        for (int s = 0; s < pp; ++s) {
            const StageProgram& prog = setup.stages[static_cast<std::size_t>(s)];
            const auto seq = order(s);
            auto& after = m_send_after[static_cast<std::size_t>(s)];
            after.assign(seq.size() + 1, std::vector<std::uint64_t>(static_cast<std::size_t>(pp), k_never));
            for (std::size_t k = seq.size(); k-- > 0;) {
                const OpList& ops = list_of(prog, seq[k].first);
                const auto& fs = setup.fs[static_cast<std::size_t>(s)][seq[k].first];
                std::uint64_t lead = 0;
                std::vector<bool> sent(static_cast<std::size_t>(pp), false);
                for (std::size_t i = 0; i < ops.size(); ++i) {
                    if (ops[i].is_comm && ops[i].comm.kind == CommKind::send) {
                        const auto peer = static_cast<std::size_t>(ops[i].comm.peer_stage);
                        m_sends_to[static_cast<std::size_t>(s)].insert(ops[i].comm.peer_stage);
                        if (!sent[peer]) after[k][peer] = lead;
                        sent[peer] = true;
                    }
                    if (!ops[i].is_comm) lead += fs[i];
                }
                for (std::size_t p = 0; p < sent.size(); ++p)
                    if (!sent[p] && after[k + 1][p] != k_never) after[k][p] = lead + after[k + 1][p];
            }
        }
        if (memo) m_engine.set_quiet([this](const std::vector<int>& chips, int s) { return quiet_until(chips, s); });
        if (trace) {
            const double rings = static_cast<double>(hw::EndpointSpec::from_config(config).dma_rings);
            m_engine.on_period_end([this, rings](const CollectiveEngine::PeriodUse& u) {
                const double span = static_cast<double>(u.end_fs - u.start_fs);
                if (span <= 0) return;
                const auto& links = m_cluster.topology().links();
                m_link_track.resize(links.size(), k_no_track);
                m_chip_track.resize(static_cast<std::size_t>(m_cluster.chips()), k_no_track);
                for (const auto& [l, busy] : u.link_busy) {
                    std::uint32_t& track = m_link_track[l];
                    if (track == k_no_track) track = new_track("link " + links[l].name);
                    count(track, u.start_fs, static_cast<double>(busy) / span);
                    count(track, u.end_fs, 0.0);
                }
                for (const auto& [c, busy] : u.dma_busy) {
                    std::uint32_t& track = m_chip_track[static_cast<std::size_t>(c)];
                    if (track == k_no_track) track = new_track(fmt::format("chip {} DMA rings", c));
                    count(track, u.start_fs, static_cast<double>(busy) / (span * rings));
                    count(track, u.end_fs, 0.0);
                }
            });
        }
        for (int s = 0; s < pp; ++s) {
            m_stage[static_cast<std::size_t>(s)].breakdown.stage = s;
            sc_core::sc_spawn([this, s] { stage_thread(s); });
        }
    }

    SimOutcome outcome() const {
        SimOutcome o;
        std::uint64_t end = 0;
        for (const auto& st : m_stage) end = std::max(end, st.end_fs);
        o.step_s = static_cast<double>(end) * 1e-15;
        for (const auto& st : m_stage) {
            StageBreakdown b = st.breakdown;
            for (const auto& [k, v] : st.compute_fs) b.compute.push_back({k, static_cast<double>(v) * 1e-15});
            for (const auto& [k, v] : st.comm_fs) b.exposed_comm.push_back({k, static_cast<double>(v) * 1e-15});
            b.pipeline_wait_s = static_cast<double>(st.pipeline_fs) * 1e-15;
            b.busy_s = static_cast<double>(st.busy_fs) * 1e-15;
            b.optimizer_s = static_cast<double>(st.optimizer_fs) * 1e-15;
            b.kernel_lag_s = static_cast<double>(st.lag_fs) * 1e-15;
            o.stages.push_back(std::move(b));
        }
        o.collectives = m_collectives;
        o.transfers = m_transfers;
        o.events = hw::WakeupQueue::wakeups() - m_wakeups_at_start;
        o.replayed = m_engine.memo_stats().replayed;
        o.simulated = m_engine.memo_stats().simulated;
        o.mirrored = m_engine.memo_stats().mirrored;
        o.trace = m_trace;
        // In time order (each track's points are; the tracks' are interleaved here), tracks by name at the same
        // time (busy periods ending together may end in either order).
        o.counters = m_counters;
        o.tracks = m_tracks;
        std::stable_sort(o.counters.begin(), o.counters.end(), [&](const TraceCounter& a, const TraceCounter& b) {
            return a.at_fs != b.at_fs ? a.at_fs < b.at_fs : o.tracks[a.track] < o.tracks[b.track];
        });
        // A message between nodes crosses its chip's NIC uplink ("n0.c3.nic") and the EFA network's port to the
        // receiver ("efa.port17"): it counts once, as EFA bytes (cluster.efa.energy_per_bit covers both NICs).
        for (const auto& l : m_cluster.topology().links()) {
            const double b = static_cast<double>(l.link->stats().bytes);
            const bool nic = l.name.size() > 4 && l.name.compare(l.name.size() - 4, 4, ".nic") == 0;
            if (!nic) (l.name.rfind("efa", 0) == 0 ? o.efa_bytes : o.link_bytes) += b;
        }
        for (int c = 0; c < m_cluster.chips(); ++c) {
            const hw::MemoryStats& m = m_cluster.memory(c).stats();
            o.memory_bytes += static_cast<double>(m.read_bytes + m.write_bytes);
        }
        return o;
    }
    CollectiveEngine& engine() { return m_engine; }
    bool finished() const {
        return std::all_of(m_stage.begin(), m_stage.end(), [](const StageState& s) { return s.finished; });
    }

private:
    // One execution of an op list (a micro-batch's forward or backward, or the step ops).
    struct ListRun {
        const OpList* ops = nullptr;
        std::size_t list = 0;
        std::int64_t mb = 0;
        std::vector<char> done;
        std::vector<std::uint64_t> launched;  // per communication op: when its traffic could start
        bool is_step = false;                 // the once-per-step ops
        bool complete = false;                // every op done (set by the stage thread)
    };
    struct StageState {
        StageBreakdown breakdown;
        std::map<std::string, std::uint64_t> compute_fs, comm_fs;
        std::uint64_t busy_fs = 0, pipeline_fs = 0, optimizer_fs = 0, lag_fs = 0, end_fs = 0;
        sc_core::sc_event progress;
        bool finished = false;
        std::map<std::pair<int, std::int64_t>, bool> inbox;  // (list, micro-batch) whose input has arrived
        std::map<int, const ListRun*> last_backward;         // per local chunk: its backward of the last micro-batch
        std::uint64_t backward_end_fs = k_never;             // when the stage's last backward finished
        std::string at, step_at;          // the op the stage's lists and its step ops are at (the memo's context)
        const ListRun* at_run = nullptr;  // the list the stage is running, and the op it is at
        std::size_t at_op = 0;
        const ListRun* step_run = nullptr;  // the step ops, and the one they are at
        std::size_t step_op = 0;
        std::uint64_t compute_end_fs = 0;  // while the core computes op at_op: when it finishes (else 0)
        bool at_issued = false;            // op at_op has started (its traffic, or its compute)
        std::size_t at_list = 0;           // the position in the stage's order of at_run (or of the next list)
        bool lists_done = false;           // every op list has run (at_run is gone)
    };
    struct Planned {
        RankLayout layout;
        Schedule schedule;
        std::size_t messages = 0;  // schedule.messages(), counted once
    };

    StageState& stage(int s) { return m_stage[static_cast<std::size_t>(s)]; }

    // The order of (list, micro-batch) a stage runs: 1F1B (Narayanan et al. 2021, PipeDream-Flush) or
    // GPipe, one model chunk per stage.
    std::vector<std::pair<std::size_t, std::int64_t>> order(int s) const {
        const int pp = static_cast<int>(m_setup.stages.size());
        std::vector<std::pair<std::size_t, std::int64_t>> out;
        if (m_setup.options.training.schedule == workload::PipelineSchedule::interleaved) {
            // Megatron-LM's interleaved 1F1B (Narayanan et al. 2021, Sec. 2.2.2; schedules.py
            // forward_backward_pipelining_with_interleaving): m x v forward and backward passes of model chunks;
            // each chunk takes pp micro-batches in a row; backward passes visit the chunks in reverse.
            const std::int64_t v = static_cast<std::int64_t>(m_setup.stages[static_cast<std::size_t>(s)].chunks.size());
            const std::int64_t total = m_m * v;
            const std::int64_t warmup = std::min(interleaved_warmup(pp, s, v), total);
            auto item = [&](std::int64_t k, bool forward) {
                const std::int64_t in_group = k % (pp * v);
                std::int64_t chunk = in_group / pp;
                if (!forward) chunk = v - chunk - 1;
                const std::int64_t mb = (k / (pp * v)) * pp + k % pp;
                return std::make_pair(static_cast<std::size_t>(2 * chunk + (forward ? 0 : 1)), mb);
            };
            for (std::int64_t k = 0; k < warmup; ++k) out.push_back(item(k, true));
            for (std::int64_t k = 0; k < total - warmup; ++k) {
                out.push_back(item(warmup + k, true));
                out.push_back(item(k, false));
            }
            for (std::int64_t k = total - warmup; k < total; ++k) out.push_back(item(k, false));
            return out;
        }
        if (m_setup.options.training.schedule == workload::PipelineSchedule::gpipe) {
            for (std::int64_t i = 0; i < m_m; ++i) out.emplace_back(0, i);
            for (std::int64_t i = 0; i < m_m; ++i) out.emplace_back(1, i);
            return out;
        }
        const std::int64_t warmup = std::min<std::int64_t>(pp - s - 1, m_m);
        for (std::int64_t i = 0; i < warmup; ++i) out.emplace_back(0, i);
        for (std::int64_t j = 0; j < m_m - warmup; ++j) {
            out.emplace_back(0, warmup + j);
            out.emplace_back(1, j);
        }
        for (std::int64_t j = m_m - warmup; j < m_m; ++j) out.emplace_back(1, j);
        return out;
    }

    void stage_thread(int s) {
        StageState& st = stage(s);
        const StageProgram& prog = m_setup.stages[static_cast<std::size_t>(s)];
        const auto seq = order(s);
        // The step ops (gradient synchronisation, clipping, optimizer) run once per step. Their gradient
        // buckets may start during the last micro-batch's backward, once the op that completes their
        // gradients has (Op::after_op, as DDP and Megatron overlap them); their compute waits for the core.
        ListRun step;
        step.list = 2 * prog.chunks.size();
        step.mb = m_m;
        step.ops = &prog.step;
        step.done.assign(step.ops->size(), 0);
        step.launched.assign(step.ops->size(), 0);
        step.is_step = true;
        sc_core::sc_event step_done;
        sc_core::sc_spawn([this, s, &step, &step_done] {
            execute(s, step);
            step_done.notify(sc_core::SC_ZERO_TIME);
        });
        std::vector<std::unique_ptr<ListRun>> runs;
        for (std::size_t k = 0; k < seq.size(); ++k) {
            auto run = std::make_unique<ListRun>();
            run->list = seq[k].first;
            run->mb = seq[k].second;
            run->ops = &list_of(prog, run->list);
            run->done.assign(run->ops->size(), 0);
            run->launched.assign(run->ops->size(), 0);
            ListRun* r = run.get();
            runs.push_back(std::move(run));
            // A chunk's backward of the last micro-batch: the step's gradient buckets of that chunk follow it.
            if (r->list % 2 == 1 && r->mb == m_m - 1) st.last_backward[static_cast<int>(r->list / 2)] = r;
            st.at_list = k;
            st.progress.notify(sc_core::SC_ZERO_TIME);
            execute(s, *r);
            r->complete = true;
            st.progress.notify(sc_core::SC_ZERO_TIME);
        }
        st.backward_end_fs = sc_core::sc_time_stamp().value();
        st.lists_done = true;
        st.at_run = nullptr;
        st.progress.notify(sc_core::SC_ZERO_TIME);
        sc_core::wait(step_done);
        st.end_fs = sc_core::sc_time_stamp().value();
        st.finished = true;
    }

    // Issues the ops in program order: each waits for its dependencies; compute ops occupy the core for
    // their time; communication is started and completes on its own. With `run.after` (the step ops),
    // an op with `after_op` also waits for that op of `after`, and compute waits for all of `after`.
    void execute(int s, ListRun& run) {
        StageState& st = stage(s);
        const OpList& ops = *run.ops;
        const auto& fs = m_setup.fs[static_cast<std::size_t>(s)][run.list];
        const auto& cls = m_setup.cls[static_cast<std::size_t>(s)][run.list];
        for (std::size_t i = 0; i < ops.size(); ++i) {
            const Op& op = ops[i];
            (run.is_step ? st.step_at : st.at) = memo_context(s, run, op);
            (run.is_step ? st.step_run : st.at_run) = &run;
            (run.is_step ? st.step_op : st.at_op) = i;
            if (!run.is_step) st.at_issued = false;
            if (run.is_step && op.after_op >= 0) {
                for (;;) {
                    const auto it = st.last_backward.find(op.after_chunk);
                    if (it != st.last_backward.end() && it->second->done[static_cast<std::size_t>(op.after_op)]) break;
                    sc_core::wait(st.progress);
                }
            }
            for (const int d : op.deps) wait_done(s, run, static_cast<std::size_t>(d));
            if (!op.is_comm) {
                if (run.is_step) {
                    while (st.backward_end_fs == k_never) sc_core::wait(st.progress);
                }
                const std::uint64_t t = fs[i];
                const std::uint64_t start_fs = sc_core::sc_time_stamp().value();
                std::uint64_t lag = 0;
                if (t > 0) {
                    const auto u = static_cast<std::size_t>(s);
                    const hw::KernelLoad load{m_setup.dma[u][run.list][i], m_setup.memory[u][run.list][i]};
                    // The kernels run for their time, then for as long as they fell behind for what the
                    // collectives took of their DMA engines and memory meanwhile, and so on while that is
                    // k_catch_up_fs or more (step 7 of docs/training.md). The stage is idle here (every op
                    // ends so), so each stretch's set_load is a change that reaches every chip of the stage.
                    std::uint64_t slice = t;
                    count_engines(s, &m_setup.engines[u][run.list][i], load);
                    for (int stretch = 0;; ++stretch) {
                        const std::uint64_t now = sc_core::sc_time_stamp().value();
                        set_load(s, load, now + slice);
                        const std::vector<hw::KernelLag> before = load.idle() ? std::vector<hw::KernelLag>{} : lags(s);
                        if (!run.is_step) st.compute_end_fs = now + slice;
                        wait_fs(slice);
                        set_load(s, {}, k_never);
                        slice = load.idle() ? 0 : lag_since(s, before);
                        if (slice < k_catch_up_fs || stretch + 1 == k_catch_up_stretches) break;
                        lag += slice;
                    }
                    count_engines(s, nullptr, {});
                    if (slice > 0) {
                        // The rest: without the kernels' load.
                        lag += slice;
                        if (!run.is_step) st.compute_end_fs = sc_core::sc_time_stamp().value() + slice;
                        wait_fs(slice);
                    }
                    if (!run.is_step) st.compute_end_fs = 0;
                }
                record(s, 0, op.name, start_fs, t + lag);
                if (!run.is_step) st.at_issued = true;
                st.busy_fs += t + lag;
                st.lag_fs += lag;
                st.compute_fs[cls[i]] += t + lag;
                if (op.phase == workload::Phase::optimizer) st.optimizer_fs += t + lag;
                run.done[i] = 1;
                st.progress.notify(sc_core::SC_ZERO_TIME);
                continue;
            }
            switch (op.comm.kind) {
                case CommKind::send:
                    send(s, run, op);
                    run.done[i] = 1;
                    break;
                case CommKind::recv: {
                    const auto key = std::make_pair(static_cast<int>(run.list), run.mb);
                    const std::uint64_t t0 = sc_core::sc_time_stamp().value();
                    while (!st.inbox[key]) sc_core::wait(st.progress);
                    st.pipeline_fs += sc_core::sc_time_stamp().value() - t0;
                    record(s, 2, op.name, t0, sc_core::sc_time_stamp().value() - t0);
                    st.inbox.erase(key);
                    run.done[i] = 1;
                    break;
                }
                default: start_collective(s, run, i); break;
            }
            if (!run.is_step) st.at_issued = true;
        }
        for (std::size_t i = 0; i < ops.size(); ++i) wait_done(s, run, i);
    }

    // Stage s's ranks run kernels taking `load` of their cores' DMA engine time and of their share of the
    // chip memory's time: each of its chips gets the load of its ranks' stages, weighted by their share of
    // the chip's ranks.
    // `until`: when the op's kernels end their current stretch, the kernel time or a catch-up stretch (k_never:
    // idle). A chip's load changes again at the earliest end of its stages' running kernels, which the
    // collective engine's memo checks a replay against.
    void set_load(int s, const hw::KernelLoad& load, std::uint64_t until) {
        hw::KernelLoad& now = m_stage_load[static_cast<std::size_t>(s)];
        m_stage_until[static_cast<std::size_t>(s)] = until;
        if (now == load) return;
        now = load;
        std::map<std::pair<hw::KernelLoad, std::uint64_t>, std::vector<int>> by_load;
        for (const int c : m_stage_chips[static_cast<std::size_t>(s)]) {
            hw::KernelLoad chip;
            std::uint64_t next = k_never;
            for (const auto& [stage, share] : m_chip_share.at(c)) {
                const hw::KernelLoad& l = m_stage_load[static_cast<std::size_t>(stage)];
                chip.dma += share * l.dma;
                chip.memory += share * l.memory;
                if (!l.idle()) next = std::min(next, m_stage_until[static_cast<std::size_t>(stage)]);
            }
            by_load[{chip, next}].push_back(c);
        }
        for (const auto& [chip, chips] : by_load) m_engine.set_kernel_load(chips, chip.first, chip.second);
    }

    // A compute op's kernels catch up with their load on, stretch after stretch, while the lag of the last
    // stretch is at least k_catch_up_fs and for at most k_catch_up_stretches (the kernel time counting as the
    // first); the rest runs without the load. Bounds of the iteration, not model parameters: the collectives
    // take at most every other turn, so the lag is about half the time at most on average and the stretches
    // shrink, but a packet or a memory request is charged whole when it starts, so a short stretch can take
    // more than its length: the cap is what guarantees the end. They shrink fast in practice (a lagging op of the
    // default run takes 5.2 stretches on average and 6 at most, of the GPT-3 175B calibration run 3.9 and 8).
    static constexpr std::uint64_t k_catch_up_fs = 1'000'000;  // 1 ns
    static constexpr int k_catch_up_stretches = 64;
    // The kernel lag of stage s's chips as of their last load change (CollectiveEngine::kernel_lag).
    std::vector<hw::KernelLag> lags(int s) const {
        std::vector<hw::KernelLag> v;
        for (const int c : m_stage_chips[static_cast<std::size_t>(s)]) v.push_back(m_engine.kernel_lag(c));
        return v;
    }
    // How much later stage s's kernels finish for the lag its chips took since `before` (lags(s)): on a chip,
    // its DMA rings' mean or its memory's, whichever is larger (a kernel is held up by the engine or by the
    // memory it reads through it, not by both at once); the stage's ranks finish with the last chip.
    std::uint64_t lag_since(int s, const std::vector<hw::KernelLag>& before) const {
        std::uint64_t lag = 0;
        const auto& chips = m_stage_chips[static_cast<std::size_t>(s)];
        for (std::size_t k = 0; k < chips.size(); ++k) {
            const hw::KernelLag d = m_engine.kernel_lag(chips[k]) - before[k];
            const auto rings = static_cast<std::uint64_t>(m_cluster.endpoint(chips[k]).spec().dma_rings);
            lag = std::max({lag, d.dma_fs / rings, d.memory_fs});
        }
        return lag;
    }

    // The collective engine's bound on sends that a replay started by stage s on `chips` does not foresee:
    // the earliest time another stage can start a pipeline send from or to a stage with ranks on them. Ops
    // are issued in program order and each compute op holds the core for at least its kernel time, so a
    // stage's next send there cannot start before the compute ops ahead of it have run.
    std::uint64_t quiet_until(const std::vector<int>& chips, int s) const {
        std::vector<bool> touched(m_stage.size(), false);
        for (const int c : chips) {
            const auto it = m_chip_share.find(c);
            if (it == m_chip_share.end()) continue;
            for (const auto& [t, share] : it->second) touched[static_cast<std::size_t>(t)] = true;
        }
        std::uint64_t quiet = k_never;
        for (int t = 0; t < static_cast<int>(m_stage.size()); ++t) {
            if (t == s) continue;
            // A stage with ranks on the chips sends from them, whatever the peer; another only to them.
            std::vector<bool> to(m_stage.size(), touched[static_cast<std::size_t>(t)]);
            bool any = touched[static_cast<std::size_t>(t)];
            for (const int peer : m_sends_to[static_cast<std::size_t>(t)]) {
                const auto p = static_cast<std::size_t>(peer);
                to[p] = to[p] || touched[p];
                any = any || touched[p];
            }
            if (any) quiet = std::min(quiet, next_send_fs(t, to));
        }
        return quiet;
    }

    // The earliest time stage s can start its next pipeline send to a stage p with to[p] (k_never: it sends
    // there no more).
    std::uint64_t next_send_fs(int s, const std::vector<bool>& to) const {
        const StageState& st = m_stage[static_cast<std::size_t>(s)];
        std::uint64_t at = sc_core::sc_time_stamp().value();
        if (st.lists_done) return k_never;
        const auto& after = m_send_after[static_cast<std::size_t>(s)];
        // From the start of the list at `list` in the stage's order on.
        const auto from_list = [&](std::size_t list) {
            std::uint64_t least = k_never;
            for (std::size_t p = 0; p < to.size(); ++p)
                if (to[p] && after[list][p] != k_never) least = std::min(least, at + after[list][p]);
            return least;
        };
        if (st.at_run == nullptr) return from_list(st.at_list);
        const ListRun& run = *st.at_run;
        const OpList& ops = *run.ops;
        const auto& fs = m_setup.fs[static_cast<std::size_t>(s)][run.list];
        std::size_t k = st.at_op;
        if (st.compute_end_fs != 0) {
            at = st.compute_end_fs;
            ++k;
        } else if (st.at_issued) {
            ++k;
        }
        for (; k < ops.size(); ++k) {
            if (ops[k].is_comm && ops[k].comm.kind == CommKind::send &&
                to[static_cast<std::size_t>(ops[k].comm.peer_stage)])
                return at;
            if (!ops[k].is_comm) at += fs[k];
        }
        return from_list(st.at_list + 1);
    }

    // Where a stage is, as far as what it starts next goes (the collective engine's memo keeps its records
    // per context; a wrong guess costs a simulation without the memo, never a wrong result): transformer
    // layers are alike except the first and the last of a chunk, and micro-batches except the backward of
    // the last (it overlaps the step's gradient reduction).
    std::string memo_context(int s, const ListRun& run, const Op& op) const {
        if (run.is_step) return op.name;
        std::string name = op.name;
        std::string where = fmt::format("{}", run.list);
        if (op.layer >= 0 && name.size() > 1 && name[0] == 'L') {
            name.erase(0, name.find('.') + 1);
            const auto& c = m_setup.stages[static_cast<std::size_t>(s)].chunks[run.list / 2];
            where += op.layer == c.first_layer                      ? "first"
                     : op.layer == c.first_layer + c.num_layers - 1 ? "last"
                                                                    : "mid";
        }
        return fmt::format("{}:{}:{}", where, name, run.list % 2 == 1 && run.mb == m_m - 1 ? "L" : "");
    }

    // Where a stage's step ops are, as far as what they start next goes. Waiting for a gradient bucket whose
    // trigger lies in the list the stage is running (the last micro-batch's backward), it is the buckets
    // whose triggers follow within k_bucket_horizon_ops ops of the stage's op: each bucket's kind and bytes
    // and its trigger (the trigger op's context, its distance from the stage's op, done or not), so that
    // buckets at the same place relative to the layer share records (bucket b37 after a middle layer's
    // mlp.up.wgrad is bucket b50 after another's). Elsewhere it is the op's name (the bucket, with its index).
    // A bucket beyond the horizon that joins a replay is a conflict (a retry without that record): the
    // horizon trades records shared for conflicts risked, never accuracy. With 4 ops, the default run's
    // first sample simulates 62 busy periods and Llama 3 70B's (TP 32, PP 4, DP 2) 246, without a conflict;
    // with a whole layer's ops (~26) 77 and 326, since bucket boundaries fall at a different place in
    // every layer.
    static constexpr std::int64_t k_bucket_horizon_ops = 4;
    std::string step_context(int s) {
        const StageState& st = stage(s);
        if (st.step_run == nullptr) return st.step_at;
        const OpList& steps = *st.step_run->ops;
        const Op& first = steps[st.step_op];
        if (first.after_op < 0) return st.step_at;
        const auto it = st.last_backward.find(first.after_chunk);
        if (it == st.last_backward.end() || it->second != st.at_run || it->second->complete) return st.step_at;
        const ListRun& run = *st.at_run;
        const auto at = static_cast<std::int64_t>(st.at_op);
        std::string ctx;
        for (std::size_t k = st.step_op; k < steps.size(); ++k) {
            const Op& b = steps[k];
            if (b.after_op < 0 || b.after_chunk != first.after_chunk) {
                ctx += "then " + b.name;
                break;
            }
            if (b.after_op - at > k_bucket_horizon_ops) {
                ctx += "then later";
                break;
            }
            const auto trigger = static_cast<std::size_t>(b.after_op);
            ctx += fmt::format("{}:{}:{} after {}{:+}{};", b.name.substr(0, b.name.rfind('.')), b.comm.bytes,
                               static_cast<int>(b.comm.dtype), memo_context(s, run, (*run.ops)[trigger]),
                               b.after_op - at, run.done[trigger] ? " done" : "");
        }
        return ctx;
    }

    void wait_done(int s, ListRun& run, std::size_t d) {
        StageState& st = stage(s);
        if (run.done[d]) return;
        const std::uint64_t t0 = sc_core::sc_time_stamp().value();
        while (!run.done[d]) sc_core::wait(st.progress);
        const Op& op = (*run.ops)[d];
        // Exposed: only while the core has nothing else to do (step ops: after the last backward).
        const std::uint64_t from = run.is_step ? std::max(t0, st.backward_end_fs) : t0;
        const std::uint64_t now = sc_core::sc_time_stamp().value();
        const std::uint64_t waited = now > from ? now - from : 0;
        if (!op.is_comm) return;
        // Waiting for the other stages of a group to reach it is pipeline wait, not communication.
        const std::uint64_t before = std::min(waited, run.launched[d] > from ? run.launched[d] - from : 0);
        st.pipeline_fs += before;
        st.comm_fs[workload::comm_group_name(op.comm.group)] += waited - before;
    }

    // The groups of a kind that involve stage s's ranks (each in group order), and how many stages they span.
    struct Instances {
        std::vector<std::vector<int>> groups;
        std::size_t stages = 0;
    };
    const Instances& instances(int s, CommGroup kind) {
        const auto key = std::make_pair(s, static_cast<int>(kind));
        auto it = m_instances.find(key);
        if (it != m_instances.end()) return it->second;
        Instances in;
        std::set<int> stages;
        for (const auto& g : m_setup.placement.groups(kind)) {
            if (g.size() < 2) continue;
            const bool mine =
                std::any_of(g.begin(), g.end(), [&](int r) { return m_setup.placement.coord(r).pp == s; });
            if (!mine) continue;
            in.groups.push_back(g);
            for (int r : g) stages.insert(m_setup.placement.coord(r).pp);
        }
        in.stages = stages.size();
        return m_instances.emplace(key, std::move(in)).first->second;
    }

    void start_collective(int s, ListRun& run, std::size_t i) {
        const Op& op = (*run.ops)[i];
        const Instances& in = instances(s, op.comm.group);
        if (in.groups.empty()) {
            run.done[i] = 1;
            return;
        }
        const std::uint64_t started = sc_core::sc_time_stamp().value();
        run.launched[i] = started;
        auto finish = [this, s, &run, i, started] {
            record(s, 1, (*run.ops)[i].name, started, sc_core::sc_time_stamp().value() - started);
            run.done[i] = 1;
            stage(s).progress.notify(sc_core::SC_ZERO_TIME);
        };
        // A group spanning several stages (embedding, world) starts when each of them has reached it.
        const auto& groups = in.groups;
        const std::size_t stages = in.stages;
        if (stages > 1) {
            const std::string key = fmt::format("{}#{}", op.name, run.mb);
            Rendezvous& rv = m_rendezvous[key];
            rv.waiters.push_back(finish);
            rv.launched.push_back(&run.launched[i]);
            if (static_cast<std::size_t>(++rv.arrived) < stages) return;
            for (std::uint64_t* l : rv.launched) *l = started;
            std::string context;
            for (int t = 0; t < static_cast<int>(m_stage.size()); ++t)
                context += stage(t).at + "/" + step_context(t) + ";";
            launch(
                op, groups,
                [this, key] {
                    for (auto& w : m_rendezvous[key].waiters) w();
                    m_rendezvous.erase(key);
                },
                context, -1, false);
            return;
        }
        launch(op, groups, finish, stage(s).at + "/" + step_context(s), s, apart(run, i));
    }

    // Whether the groups of op i's collective stay apart while it runs (docs/adr/0009): collectives of
    // other groups (the gradient buckets, which span the tensor-parallel groups' replicas) start from the
    // last micro-batch's backward on, and a pipeline send keeps to the replicas (one that joins two busy
    // periods is a conflict the retry clears); among the step ops, a collective whose remaining step
    // collectives all run on the same groups (ZeRO-1's parameter all-gathers after the optimizer).
    bool apart(const ListRun& run, std::size_t i) const {
        if (!run.is_step) return !(run.list % 2 == 1 && run.mb == m_m - 1);
        const OpList& ops = *run.ops;
        return std::all_of(ops.begin() + static_cast<std::ptrdiff_t>(i), ops.end(),
                           [&](const Op& o) { return !o.is_comm || o.comm.group == ops[i].comm.group; });
    }

    // Starts the op's collective for every group at once; `context`: where the stages that start it are (the
    // collective engine's memo keeps its records per context); `source`: the stage (-1: several).
    void launch(const Op& op, const std::vector<std::vector<int>>& groups, std::function<void()> on_all_done,
                const std::string& context, int source, bool apart) {
        auto left = std::make_shared<std::size_t>(groups.size());
        std::vector<CollectiveEngine::BatchItem> batch;
        for (const auto& g : groups) {
            const Planned& p = plan(op, g);
            ++m_collectives;
            m_transfers += p.messages;
            batch.push_back({&p.schedule, &p.layout, [left, on_all_done](std::uint64_t) {
                                 if (--*left == 0) on_all_done();
                             }});
        }
        m_engine.start_batch(std::move(batch), context, source, apart);
    }

    const Planned& plan(const Op& op, const std::vector<int>& group) {
        // Data-parallel traffic runs on its own collective stream (ZeRO-1's parameter all-gathers too), in
        // smaller DMA packets than the tensor-parallel one's ([CC-OVERLAP], cluster.cc.dp_packet).
        const int stream = op.comm.group == CommGroup::dp ? 1 : 0;
        std::string key = fmt::format("{}|{}|{}|", static_cast<int>(op.comm.kind), op.comm.bytes, stream);
        for (int r : group) key += std::to_string(r) + ",";
        auto it = m_plans.find(key);
        if (it != m_plans.end()) return it->second;
        Planned p;
        p.layout = m_engine.layout(group);
        CollectiveRequest q;
        q.op = collective_of(op.comm.kind);
        q.bytes = op.comm.bytes;
        q.auto_mesh_max = m_spec.auto_mesh_max.count;
        q.auto_rdh_max = m_spec.auto_rdh_max.count;
        p.schedule = collective_algorithm(m_setup.options.algorithm).build(q, p.layout);
        p.schedule.stream = stream;
        p.messages = p.schedule.messages();
        return m_plans.emplace(key, std::move(p)).first->second;
    }

    // Pipeline send: every (dp, tp) rank of stage s sends to its peer in the neighbouring stage; the peer's
    // receive completes when all of those have arrived.
    void send(int s, const ListRun& run, const Op& op) {
        const int peer = op.comm.peer_stage;
        const auto& P = m_setup.placement;
        // The receiving list: a forward goes to the next model chunk's forward, a backward to the previous
        // chunk's backward (global chunk g = local x pp + stage).
        const int pp = P.pp();
        const bool forward = run.list % 2 == 0;
        const int g = static_cast<int>(run.list / 2) * pp + s + (forward ? 1 : -1);
        const auto key = std::make_pair(2 * (g / pp) + (forward ? 0 : 1), run.mb);
        auto left = std::make_shared<int>(P.dp() * P.tp());
        // One batch of one-transfer schedules, so the collective engine's memo can record and replay them.
        std::vector<CollectiveEngine::BatchItem> batch;
        for (int d = 0; d < P.dp(); ++d) {
            for (int t = 0; t < P.tp(); ++t) {
                const Planned& p = p2p_plan(P.rank({d, s, t}), P.rank({d, peer, t}), op.comm.bytes);
                ++m_transfers;
                batch.push_back({&p.schedule, &p.layout, [this, left, peer, key](std::uint64_t) {
                                     if (--*left > 0) return;
                                     stage(peer).inbox[key] = true;
                                     stage(peer).progress.notify(sc_core::SC_ZERO_TIME);
                                 }});
            }
        }
        m_engine.start_batch(std::move(batch), stage(s).at + "/" + step_context(s), s);
    }

    const Planned& p2p_plan(int src, int dst, std::uint64_t bytes) {
        const std::string key = fmt::format("p2p|{}|{}|{}", src, dst, bytes);
        auto it = m_plans.find(key);
        if (it != m_plans.end()) return it->second;
        Planned p;
        p.layout = m_engine.layout({src, dst});
        p.schedule.algorithm = "send";
        p.schedule.steps = 1;
        p.schedule.transfers.push_back({0, 1, bytes, false, {}});
        p.messages = 1;
        return m_plans.emplace(key, std::move(p)).first->second;
    }

    struct Rendezvous {
        int arrived = 0;
        std::vector<std::function<void()>> waiters;
        std::vector<std::uint64_t*> launched;  // the waiters' ListRun::launched slots
    };

    void record(int s, int track, const std::string& name, std::uint64_t start, std::uint64_t duration) {
        if (m_trace_on && duration > 0) m_trace.push_back({s, track, name, start, start + duration});
    }

    // Stage s's engines from now on: a compute op's kernels' utilization and load (DMA, chip memory), or
    // idle (nullptr).
    void count_engines(int s, const std::array<double, 4>* engines, const hw::KernelLoad& load) {
        if (!m_trace_on) return;
        auto& tracks = m_engine_tracks[s];
        if (tracks.empty()) {
            for (const char* e : k_engines) tracks.push_back(new_track(fmt::format("stage {} {}", s, e)));
            tracks.push_back(new_track(fmt::format("stage {} dma", s)));
            tracks.push_back(new_track(fmt::format("stage {} hbm", s)));
        }
        const std::uint64_t now = sc_core::sc_time_stamp().value();
        for (std::size_t e = 0; e < k_engines.size(); ++e) count(tracks[e], now, engines ? (*engines)[e] : 0.0);
        count(tracks[k_engines.size()], now, load.dma);
        count(tracks[k_engines.size() + 1], now, load.memory);
    }

    static constexpr std::uint32_t k_no_track = ~std::uint32_t{0};
    std::uint32_t new_track(std::string name) {
        m_tracks.push_back(std::move(name));
        m_track_last.push_back(k_no_last);
        return static_cast<std::uint32_t>(m_tracks.size() - 1);
    }
    // A counter's value from `at_fs` on: a point at (or, from a merged period that began earlier, before)
    // the time of the track's last one replaces it, and one that does not change the value is left out.
    static constexpr std::size_t k_no_last = ~std::size_t{0};
    void count(std::uint32_t track, std::uint64_t at_fs, double value) {
        std::size_t& last = m_track_last[track];
        if (last != k_no_last) {
            TraceCounter& c = m_counters[last];
            if (at_fs <= c.at_fs) {
                c.value = value;
                return;
            }
            if (c.value == value) return;
        } else if (value == 0) {
            return;  // idle from the start
        }
        last = m_counters.size();
        m_counters.push_back({track, at_fs, value});
    }

    bool m_trace_on = false;
    std::vector<TraceEvent> m_trace;
    std::vector<TraceCounter> m_counters;
    std::vector<std::string> m_tracks;
    std::vector<std::size_t> m_track_last;  // per track: its last point in m_counters
    std::vector<std::uint32_t> m_link_track, m_chip_track;
    std::map<int, std::vector<std::uint32_t>> m_engine_tracks;

    const Setup& m_setup;
    hw::ClusterSpec m_spec;
    hw::Cluster m_cluster;
    CollectiveEngine m_engine;
    std::int64_t m_m;
    std::deque<StageState> m_stage;  // sc_event inside: not movable
    std::map<std::string, Planned> m_plans;
    std::map<std::string, Rendezvous> m_rendezvous;
    std::map<std::pair<int, int>, Instances> m_instances;
    std::uint64_t m_collectives = 0, m_transfers = 0;
    std::uint64_t m_wakeups_at_start;
    std::vector<std::vector<int>> m_stage_chips;
    std::vector<hw::KernelLoad> m_stage_load;
    std::vector<std::uint64_t> m_stage_until;           // per stage: when its running op's stretch ends (k_never: idle)
    std::map<int, std::map<int, double>> m_chip_share;  // chip -> stage -> share of the chip's ranks
    std::vector<std::set<int>> m_sends_to;              // per stage: the stages its pipeline sends go to
    // Per stage, per position in its order (one past the end: none), per stage sent to: the least compute from
    // the start of that op list until its next send there (k_never: none).
    std::vector<std::vector<std::vector<std::uint64_t>>> m_send_after;
};

// The trace's counters travel after the outcome's JSON as text, one "track at value" per line (the value in
// the shortest form that reads back to the same double): a 512-chip step has millions of them, which as
// JSON values took gigabytes.
constexpr std::string_view k_counters_mark = "\n#counters\n";

std::string with_counters(std::string json, const std::vector<TraceCounter>& counters) {
    fmt::memory_buffer b;
    for (const TraceCounter& c : counters)
        fmt::format_to(std::back_inserter(b), "{} {} {}\n", c.track, c.at_fs, c.value);
    json += k_counters_mark;
    json.append(b.data(), b.size());
    return json;
}

// The JSON part of a simulation's text, and its counters.
std::string_view json_part(std::string_view text) {
    return text.substr(0, std::min(text.size(), text.find(k_counters_mark)));
}

std::vector<TraceCounter> counters_part(const std::string& text) {
    std::vector<TraceCounter> out;
    const std::size_t at = text.find(k_counters_mark);
    if (at == std::string::npos) return out;
    const char* p = text.c_str() + at + k_counters_mark.size();
    while (*p != '\0') {
        char* end = nullptr;
        TraceCounter c;
        c.track = static_cast<std::uint32_t>(std::strtoul(p, &end, 10));
        c.at_fs = std::strtoull(end, &end, 10);
        c.value = std::strtod(end, &end);
        if (*end != '\n') throw std::logic_error("training step: a trace counter line is malformed");
        out.push_back(c);
        p = end + 1;
    }
    return out;
}

nlohmann::json to_json(const SimOutcome& o) {
    nlohmann::json stages = nlohmann::json::array();
    auto shares = [](const std::vector<TimeShare>& v) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& t : v) j.push_back({t.name, t.seconds});
        return j;
    };
    for (const auto& b : o.stages) {
        stages.push_back({{"stage", b.stage},
                          {"busy", b.busy_s},
                          {"compute", shares(b.compute)},
                          {"comm", shares(b.exposed_comm)},
                          {"pipeline", b.pipeline_wait_s},
                          {"optimizer", b.optimizer_s},
                          {"kernel_lag", b.kernel_lag_s}});
    }
    nlohmann::json trace = nlohmann::json::array();
    for (const auto& e : o.trace) trace.push_back({e.stage, e.track, e.name, e.start_fs, e.end_fs});
    return {{"trace", trace},
            {"tracks", o.tracks},
            {"step", o.step_s},
            {"stages", stages},
            {"collectives", o.collectives},
            {"transfers", o.transfers},
            {"replayed", o.replayed},
            {"simulated", o.simulated},
            {"mirrored", o.mirrored},
            {"events", o.events},
            {"link_bytes", o.link_bytes},
            {"efa_bytes", o.efa_bytes},
            {"memory_bytes", o.memory_bytes}};
}

SimOutcome from_json(const nlohmann::json& j) {
    SimOutcome o;
    o.step_s = j.at("step").get<double>();
    for (const auto& e : j.at("trace")) {
        o.trace.push_back({e.at(0).get<int>(), e.at(1).get<int>(), e.at(2).get<std::string>(),
                           e.at(3).get<std::uint64_t>(), e.at(4).get<std::uint64_t>()});
    }
    o.tracks = j.at("tracks").get<std::vector<std::string>>();
    o.collectives = j.at("collectives").get<std::uint64_t>();
    o.transfers = j.at("transfers").get<std::uint64_t>();
    o.replayed = j.at("replayed").get<std::uint64_t>();
    o.simulated = j.at("simulated").get<std::uint64_t>();
    o.mirrored = j.at("mirrored").get<std::uint64_t>();
    o.events = j.at("events").get<std::uint64_t>();
    o.link_bytes = j.at("link_bytes").get<double>();
    o.efa_bytes = j.at("efa_bytes").get<double>();
    o.memory_bytes = j.at("memory_bytes").get<double>();
    auto shares = [](const nlohmann::json& a) {
        std::vector<TimeShare> v;
        for (const auto& e : a) v.push_back({e.at(0).get<std::string>(), e.at(1).get<double>()});
        return v;
    };
    for (const auto& s : j.at("stages")) {
        StageBreakdown b;
        b.stage = s.at("stage").get<int>();
        b.busy_s = s.at("busy").get<double>();
        b.compute = shares(s.at("compute"));
        b.exposed_comm = shares(s.at("comm"));
        b.pipeline_wait_s = s.at("pipeline").get<double>();
        b.optimizer_s = s.at("optimizer").get<double>();
        b.kernel_lag_s = s.at("kernel_lag").get<double>();
        o.stages.push_back(std::move(b));
    }
    return o;
}

// Simulates the step with each micro-batch count, each in its own child process, with the collective
// engine's memo (docs/adr/0006): the smallest count first, alone; its records then serve the others, in
// parallel. A count whose replay met a conflict is simulated again without that record, as long as each
// conflict comes later in simulated time than the one before (the simulation stops at a conflict, so such
// attempts cost the time up to it) and at most k_memo_attempts times; then without the memo. The first
// count's simulation records the trace (when asked).
//
// `records` (none: nullptr): memo records to start from (from an earlier run of the same setup, --cache); on
// return, the records the first count made or imported, but those that met a conflict in any count.
std::vector<SimOutcome> simulate(const Setup& setup, const Config& config, const std::vector<std::int64_t>& counts,
                                 std::string* records = nullptr) {
    constexpr int k_memo_attempts = 64;
    const std::string conflict_tag = "memo conflict: ";
    std::vector<std::string> texts(counts.size());
    std::vector<std::set<std::string>> skip(counts.size());
    std::vector<std::uint64_t> conflict_fs(counts.size(), 0);  // the last conflict's time
    std::vector<bool> memo_on(counts.size(), setup.options.memo);
    // The records an attempt that met a conflict had made (and imported) by then: the periods that ended
    // before the conflict are valid records, so the next attempt replays them instead of simulating again.
    std::vector<std::string> carried(counts.size());
    // Mirrored periods that met a conflict, per count: past k_mirror_conflicts the count mirrors none (a
    // layout whose mirrors keep breaking must not use up the attempts that replays need).
    constexpr int k_mirror_conflicts = 16;
    std::vector<int> mirror_conflicts(counts.size(), 0);
    // Runs the counts `which` (in parallel) until none meets a conflict.
    auto run = [&](std::vector<std::size_t> which, const std::string& records) {
        for (int attempt = 0; !which.empty(); ++attempt) {
            std::vector<std::function<std::string()>> bodies;
            for (const std::size_t i : which) {
                const std::int64_t m = counts[i];
                const bool trace = i == 0 && setup.options.trace;
                const bool memo = memo_on[i] && attempt < k_memo_attempts;
                if (setup.options.memo && !memo) {
                    // Exact all the same, but every collective goes packet by packet: say why it is slow.
                    logger("memo")->warn(
                        "{} micro-batches: simulated without the collective memo after {} conflicts (busy periods "
                        "that do not repeat, e.g. stages sharing chips; docs/adr/0006): this can take minutes",
                        m, attempt);
                }
                const std::set<std::string>& no = skip[i];
                const std::string& more = carried[i];
                bodies.push_back([&setup, &config, &records, &no, &more, &conflict_tag, m, trace, memo] {
                    init_systemc();
                    StepSimulation sim(setup, config, m, trace, memo, no);
                    if (memo && !records.empty()) sim.engine().import_memo(records);
                    if (memo && !more.empty()) sim.engine().import_memo(more);
                    run_simulation();
                    const auto& ms = sim.engine().memo_stats();
                    logger("memo")->debug(
                        "{} micro-batches: busy periods {} simulated ({} recorded, {} merged, {} mirrored), {} "
                        "replayed",
                        m, ms.simulated, ms.recorded, ms.merged, ms.mirrored, ms.replayed);
                    if (sim.engine().memo_conflict()) {
                        return conflict_tag + std::to_string(sc_core::sc_time_stamp().value()) + " " +
                               sim.engine().memo_conflict_key() + "\n" + sim.engine().export_memo();
                    }
                    if (!sim.finished()) throw std::logic_error("training step: a stage did not finish (deadlock)");
                    const SimOutcome outcome = sim.outcome();
                    return with_counters(
                        nlohmann::json{{"outcome", to_json(outcome)}, {"memo", memo ? sim.engine().export_memo() : ""}}
                            .dump(),
                        outcome.counters);
                });
            }
            const int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
            const std::vector<std::string> out = run_isolated_all(bodies, jobs);
            std::vector<std::size_t> again;
            for (std::size_t k = 0; k < which.size(); ++k) {
                texts[which[k]] = out[k];
                if (out[k].rfind(conflict_tag, 0) == 0) {
                    const std::size_t i = which[k];
                    const std::string rest = out[k].substr(conflict_tag.size());
                    const std::size_t space = rest.find(' ');
                    const std::size_t line = rest.find('\n');
                    const std::uint64_t at = std::stoull(rest.substr(0, space));
                    // The records (tab-separated) to do without from now on.
                    bool fresh = false;
                    std::istringstream keys(rest.substr(space + 1, line - space - 1));
                    for (std::string key; std::getline(keys, key, '\t');) {
                        fresh = skip[i].insert(key).second || fresh;
                        if (key.rfind("mirror|", 0) == 0 && ++mirror_conflicts[i] >= k_mirror_conflicts)
                            skip[i].insert(CollectiveEngine::k_no_mirror);
                    }
                    // No progress (an earlier conflict, or the same one again): without the memo.
                    if (at < conflict_fs[i] || (at == conflict_fs[i] && !fresh)) memo_on[i] = false;
                    conflict_fs[i] = at;
                    carried[i] = rest.substr(line + 1);
                    logger("memo")->debug("{} micro-batches, attempt {}: a memo conflict at {} fs; again {}", counts[i],
                                          attempt + 1, at, memo_on[i] ? "without that record" : "without the memo");
                    again.push_back(i);
                }
            }
            which = std::move(again);
        }
    };
    // The smallest count of more than one micro-batch first, then the rest: the others repeat its busy
    // periods. One micro-batch has no backward but the last one's (which overlaps the gradient buckets), so
    // both larger counts would simulate the backward of an earlier micro-batch themselves.
    std::size_t first = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        const bool better = counts[first] < 2 ? counts[i] > counts[first] : counts[i] >= 2 && counts[i] < counts[first];
        if (better) first = i;
    }
    const std::string none;
    run({first}, records != nullptr ? *records : none);
    std::string first_records;
    if (texts[first].rfind("{", 0) == 0)
        first_records = nlohmann::json::parse(json_part(texts[first])).at("memo").get<std::string>();
    std::vector<std::size_t> rest;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (i == first) continue;
        rest.push_back(i);
        skip[i] = skip[first];  // the records that conflicted there
    }
    run(rest, first_records.empty() && records != nullptr ? *records : first_records);
    std::vector<SimOutcome> out;
    for (const std::string& text : texts) {
        if (text.rfind(k_internal_error, 0) == 0)
            throw std::runtime_error("training step simulation failed: " + text.substr(7));
        if (text.rfind("error: ", 0) == 0) throw UserError(text.substr(7));
        out.push_back(from_json(nlohmann::json::parse(json_part(text)).at("outcome")));
        out.back().counters = counters_part(text);
    }
    // What the first count recorded and imported (the others repeat it; their own few periods are not kept),
    // or, when it ran without the memo, what it was given; without the records that met a conflict anywhere.
    if (records != nullptr) {
        if (!first_records.empty()) *records = first_records;
        std::set<std::string> conflicted;
        for (const auto& no : skip) conflicted.insert(no.begin(), no.end());
        if (!conflicted.empty() && !records->empty()) {
            nlohmann::json all = nlohmann::json::parse(*records);
            for (const std::string& key : conflicted) all.erase(key);
            *records = all.empty() ? std::string() : all.dump();
        }
    }
    return out;
}

// The memo record files' names in a cache directory: prefix, key, suffix (what trim() takes as records).
constexpr std::string_view k_memo_prefix = "memo-", k_memo_suffix = ".records";

// The file name of the collective memo's records for runs of this setup under --cache: a content key of what
// the step's simulation reads (the resolved config, the model, the training options; not the kernel timings,
// whose ends a replay checks itself) and of the simulator itself (its executable and shared libraries,
// code_identity), so that records replay only into the simulation that made them; "" when the executable
// cannot be read (no records are kept then).
std::string memo_cache_name(const TrainingOptions& o, const workload::ModelSpec& m, const Config& config) {
    const std::string& code = code_identity();
    if (code.empty()) return {};
    std::string text = code + "\n";
    for (const auto& [k, v] : config.values()) text += k + "=" + v.text + "\n";
    const auto& t = o.training;
    text += fmt::format("model {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}\n", m.name, static_cast<int>(m.arch),
                        m.layers, m.hidden, m.heads, m.kv_heads, m.ffn_hidden, m.vocab, m.max_seq,
                        static_cast<int>(m.norm), static_cast<int>(m.activation), static_cast<int>(m.position),
                        m.tied_embeddings, m.bias, m.dropout, m.origin);
    text += fmt::format("training {} bucket {} grad {}\nplacement {} algorithm {} samples {}\n", t.describe(),
                        t.dp_bucket.count, dtype_name(t.grad_dtype), o.placement, o.algorithm, o.sample_microbatches);
    return std::string(k_memo_prefix) + stable_hash(text) + std::string(k_memo_suffix);
}

// The memo records a cache directory keeps, least recently used first out: records of setups not run
// again, or made by another build of trnsim (code_identity), are never used again but would pile up over
// sweeps and rebuilds (0.1-1.2 MB a setup; 8.6 MB the calibration run).
constexpr std::uint64_t k_memo_records_max_bytes = std::uint64_t{1} << 30;

// The memo file's text: a header line with a hash of the records, then the records (a JSON object; "" for
// none). Reading returns the records, or "" when the header or the hash does not match (a damaged or foreign
// file is not used, and the run writes it anew).
constexpr std::string_view k_memo_header = "trnsim memo records ";
std::string memo_file(const std::string& records) {
    return std::string(k_memo_header) + stable_hash(records) + "\n" + records;
}
std::string read_memo_file(const std::string& text) {
    const std::size_t line = text.find('\n');
    if (text.rfind(k_memo_header, 0) != 0 || line == std::string::npos) return {};
    std::string records = text.substr(line + 1);
    if (text.substr(k_memo_header.size(), line - k_memo_header.size()) != stable_hash(records)) return {};
    return records;
}

// a + b m through two samples, for every time in the outcome (names matched by position).
SimOutcome extrapolate(const SimOutcome& o1, const SimOutcome& o2, std::int64_t m1, std::int64_t m2, std::int64_t m) {
    const double f = static_cast<double>(m - m2) / static_cast<double>(m2 - m1);
    auto ext = [f](double v1, double v2) { return v2 + (v2 - v1) * f; };
    SimOutcome o = o2;
    o.step_s = ext(o1.step_s, o2.step_s);
    o.link_bytes = ext(o1.link_bytes, o2.link_bytes);
    o.efa_bytes = ext(o1.efa_bytes, o2.efa_bytes);
    o.memory_bytes = ext(o1.memory_bytes, o2.memory_bytes);
    for (std::size_t s = 0; s < o.stages.size(); ++s) {
        auto& b = o.stages[s];
        const auto& a = o1.stages[s];
        b.busy_s = ext(a.busy_s, b.busy_s);
        b.pipeline_wait_s = ext(a.pipeline_wait_s, b.pipeline_wait_s);
        b.optimizer_s = ext(a.optimizer_s, b.optimizer_s);
        b.kernel_lag_s = ext(a.kernel_lag_s, b.kernel_lag_s);
        auto ext_shares = [&](std::vector<TimeShare>& v2, const std::vector<TimeShare>& v1) {
            for (auto& t : v2) {
                double before = 0;
                for (const auto& u : v1)
                    if (u.name == t.name) before = u.seconds;
                t.seconds = ext(before, t.seconds);
            }
        };
        ext_shares(b.compute, a.compute);
        ext_shares(b.exposed_comm, a.exposed_comm);
    }
    return o;
}

}  // namespace

TrainingResult run_training(const TrainingOptions& options, Config config) {
    const auto wall_start = std::chrono::steady_clock::now();
    Setup setup;
    setup.options = options;
    setup.model = workload::load_model(options.model);
    const workload::TrainingSpec& tr = options.training;
    tr.validate(setup.model);

    // Training ranks are logical cores: chip.cores / chip.lnc per chip.
    const hw::ChipSpec chip = hw::ChipSpec::from_config(config);
    const int ranks_per_chip = chip.cores / chip.lnc;
    config.set("cluster.ranks_per_chip", std::to_string(ranks_per_chip),
               "derived: chip.cores / chip.lnc (a training rank is a logical core)");
    const hw::ClusterSpec cluster = hw::ClusterSpec::from_config(config);
    if (tr.ranks() != cluster.ranks()) {
        throw UserError(fmt::format(
            "--tp {} x --pp {} x --dp {} = {} ranks; the cluster {} has {} ({} node(s) x {} chips x {} logical "
            "cores, chip.cores {} / chip.lnc {}); allowed: tp x pp x dp = {}",
            tr.tp, tr.pp, tr.dp, tr.ranks(), cluster.name, cluster.ranks(), cluster.nodes, cluster.chips_per_node(),
            ranks_per_chip, chip.cores, chip.lnc, cluster.ranks()));
    }
    setup.placement = workload::Placement(tr.tp, tr.pp, tr.dp, options.placement);
    setup.stages = workload::build_all_stages(setup.model, tr);

    TrainingResult r;
    r.model = setup.model.name;
    r.cluster = cluster.name;
    r.chip = chip.name;
    r.training = tr.describe();
    r.placement = setup.placement.order();
    r.nodes = cluster.nodes;
    r.chips = cluster.chips();
    r.ranks = cluster.ranks();
    r.ranks_per_chip = ranks_per_chip;
    r.lnc = chip.lnc;
    r.params = workload::parameter_count(setup.model).total;
    r.microbatches = tr.grad_accum_steps();

    // Memory per chip.
    r.memory = workload::memory_footprints(setup.model, tr);
    r.capacity = workload::check_capacity(r.memory, tr, setup.placement, ranks_per_chip, chip.memory_capacity,
                                          chip.name + " chip");
    if (!r.capacity.fits && !options.allow_oom) throw UserError(r.capacity.message);

    // Compute op times from the NeuronCore model.
    std::vector<lowering::KernelRequest> requests;
    std::vector<std::vector<std::vector<OpCost>>> costs(setup.stages.size());
    for (std::size_t s = 0; s < setup.stages.size(); ++s) {
        const StageProgram& p = setup.stages[s];
        for (std::size_t l = 0; l < list_count(p); ++l) {
            costs[s].emplace_back();
            for (const Op& op : list_of(p, l)) {
                costs[s][l].push_back(op.is_comm ? OpCost{} : op_cost(op, chip));
                for (const auto& k : costs[s][l].back().kernels) requests.push_back(k);
            }
        }
    }
    KernelCache cache(options.cache_dir);
    const std::vector<KernelTiming> timings = cache.time(requests, config);
    // The distinct kernels, once each.
    std::map<std::string, const KernelTiming*> distinct;
    const std::string chip_text = KernelCache::chip_text(config);
    for (std::size_t i = 0; i < requests.size(); ++i)
        distinct.emplace(KernelCache::key(requests[i], chip_text), &timings[i]);
    // The HBM's energy (docs/training.md, "Energy"): each kernel execution's accesses; stream ops' and the
    // collectives' bytes at the kernels' mean access energy per byte, over their executions; and the stacks'
    // background and refresh power, the kernels' mean over their time, for the whole step on every chip.
    double hbm_access_j = 0, hbm_access_bytes = 0, stream_bytes = 0, standby_ws = 0, standby_s = 0;
    const double e_sbuf = config.get_energy("chip.energy.sbuf_byte").joules;
    auto mac_energy = [&](DType d) {
        if (d == DType::fp32) return config.get_energy("chip.energy.mac_fp32").joules;
        if (d == DType::fp8_e4m3 || d == DType::fp8_e5m2) return config.get_energy("chip.energy.mac_fp8").joules;
        return config.get_energy("chip.energy.mac_bf16").joules;
    };
    const double rows = static_cast<double>(chip.core.tensor.rows);
    StepEnergy energy;
    std::size_t next = 0;  // `timings` follow the ops in the order the requests were gathered above
    setup.fs.resize(setup.stages.size());
    setup.cls.resize(setup.stages.size());
    setup.dma.resize(setup.stages.size());
    setup.memory.resize(setup.stages.size());
    // The collectives' memory (ADR 0008) serves the kernels' bytes at these rates.
    const hw::HbmRates* rates = cluster.memory_model == "hbm" ? &hw::hbm_rates(config, cluster.packet.count) : nullptr;
    auto memory_fs = [&](double read_bytes, double write_bytes) {
        return rates == nullptr ? 0.0 : read_bytes / rates->read_bytes_per_s + write_bytes / rates->write_bytes_per_s;
    };
    setup.engines.resize(setup.stages.size());
    for (std::size_t s = 0; s < setup.stages.size(); ++s) {
        const StageProgram& p = setup.stages[s];
        for (std::size_t l = 0; l < list_count(p); ++l) {
            setup.fs[s].emplace_back();
            setup.cls[s].emplace_back();
            setup.dma[s].emplace_back();
            setup.memory[s].emplace_back();
            setup.engines[s].emplace_back();
            const OpList& ops = list_of(p, l);
            for (std::size_t i = 0; i < ops.size(); ++i) {
                const OpCost& c = costs[s][l][i];
                double seconds = c.stream ? static_cast<double>(c.stream_fs) * 1e-15 : 0.0;
                double dma_seconds = seconds;  // a stream op is all DMA
                // A stream op's bytes are its rank's; a kernel's, one piece's, and a rank runs lnc pieces.
                double memory_seconds =
                    c.stream ? memory_fs(ops[i].kernel.bytes_read, ops[i].kernel.bytes_written) : 0.0;
                std::array<double, 4> engine_seconds{};
                // Executions per step of this op on one rank, and ranks doing it (the stage's class).
                const double runs = (l == list_count(p) - 1 ? 1.0 : static_cast<double>(tr.grad_accum_steps())) *
                                    static_cast<double>(tr.tp * tr.dp);
                if (c.stream && !ops[i].is_comm)
                    stream_bytes += runs * (ops[i].kernel.bytes_read + ops[i].kernel.bytes_written);
                for (std::size_t k = 0; k < c.kernels.size(); ++k) {
                    const KernelTiming& t = timings[next++];
                    seconds += c.counts[k] * t.time_s;
                    const auto dma = t.utilization.find("dma");
                    if (dma != t.utilization.end()) dma_seconds += c.counts[k] * t.time_s * dma->second;
                    memory_seconds +=
                        c.counts[k] * static_cast<double>(chip.lnc) *
                        memory_fs(static_cast<double>(t.hbm_read_bytes), static_cast<double>(t.hbm_write_bytes));
                    for (std::size_t e = 0; e < k_engines.size(); ++e) {
                        const auto u = t.utilization.find(k_engines[e]);
                        if (u != t.utilization.end()) engine_seconds[e] += c.counts[k] * t.time_s * u->second;
                    }
                    // Energy of every piece (a logical core runs lnc of them side by side).
                    const double n = runs * c.counts[k] * static_cast<double>(chip.lnc) * c.work_share;
                    const double macs = static_cast<double>(t.tensor_macs);
                    const double dma_bytes = static_cast<double>(t.hbm_read_bytes + t.hbm_write_bytes);
                    // SBUF: DMA writes in and reads out; the tensor engine reads its moving operand once per
                    // array row group and accumulates FP32 partial sums in PSUM (docs/training.md).
                    const double sbuf_bytes = 2.0 * dma_bytes + macs / rows * (dtype_bytes(c.kernels[k].dtype) + 4.0);
                    energy.tensor_engine += n * macs * mac_energy(c.kernels[k].dtype);
                    energy.sbuf += n * sbuf_bytes * e_sbuf;
                    energy.hbm += n * t.memory_access_j;
                    hbm_access_j += n * t.memory_access_j;
                    hbm_access_bytes += n * dma_bytes;
                    standby_ws += n * t.time_s * t.memory_standby_w;
                    standby_s += n * t.time_s;
                }
                setup.fs[s][l].push_back(op_fs(seconds, ops[i].name));
                setup.dma[s][l].push_back(seconds > 0 ? std::min(1.0, dma_seconds / seconds) : 0.0);
                setup.memory[s][l].push_back(seconds > 0 ? std::min(1.0, memory_seconds * ranks_per_chip / seconds)
                                                         : 0.0);
                for (double& e : engine_seconds) e = seconds > 0 ? std::min(1.0, e / seconds) : 0.0;
                setup.engines[s][l].push_back(engine_seconds);
                setup.cls[s][l].push_back(ops[i].is_comm ? "" : op_class(ops[i]));
            }
        }
    }
    if (next != timings.size()) throw std::logic_error("training step: kernel timings out of step with the ops");
    r.distinct_kernels = distinct.size();
    r.kernel_cache_hits = cache.hits();
    r.kernel_cache_misses = cache.misses();
    r.kernel_wall_s = cache.simulate_wall_s();
    for (const auto& c : workload::symmetry_classes(setup.placement)) r.simulated_ranks.push_back(c.representative);

    // The step, sampled and extrapolated when it has many micro-batches.
    const std::int64_t m = r.microbatches;
    // Samples start once the pipeline has filled (1F1B: pp - 1 warm-up forwards). The interleaved schedule
    // takes micro-batches in groups of pp, and its first stage warms up longest (interleaved_warmup): the first
    // sample has more forward passes, m v, so that every sample reaches the steady 1F1B phase.
    const bool interleaved = tr.schedule == workload::PipelineSchedule::interleaved;
    const std::int64_t step = interleaved ? tr.pp : 1;
    std::int64_t s0 = std::max<std::int64_t>(options.sample_microbatches, tr.pp);
    if (interleaved) {
        const auto v = static_cast<std::int64_t>(setup.stages.front().chunks.size());
        s0 = std::max(s0, interleaved_warmup(tr.pp, 0, v) / v + 1);
        s0 = tr.pp * ((s0 + tr.pp - 1) / tr.pp);
    }
    // The collective memo's records of an earlier run of this setup (--cache), and kept for the next.
    const std::string memo_name =
        options.memo && !options.cache_dir.empty() ? memo_cache_name(options, setup.model, config) : std::string();
    std::string records = memo_name.empty() ? std::string() : read_memo_file(cache.load_text(memo_name));
    if (!records.empty()) cache.touch(memo_name);  // used: the last records trim() removes
    const std::string loaded = records;
    std::string* const kept = memo_name.empty() ? nullptr : &records;
    SimOutcome outcome;
    if (m <= s0 + 2 * step) {
        outcome = simulate(setup, config, {m}, kept).front();
        r.simulated = {m};
        r.sampled_step_s = {outcome.step_s};
        r.events = outcome.events;
    } else {
        const auto samples = simulate(setup, config, {s0 + 2 * step, s0 + step, s0}, kept);  // longest first
        const SimOutcome &a = samples[2], &b = samples[1], &c = samples[0];
        r.simulated = {s0, s0 + step, s0 + 2 * step};
        r.sampled_step_s = {a.step_s, b.step_s, c.step_s};
        r.events = a.events + b.events + c.events;
        const double d1 = b.step_s - a.step_s, d2 = c.step_s - b.step_s;
        // On a line: if the increment per micro-batch kept varying as much as between the samples, the
        // extended step would be off by at most |d2 - d1| per extended micro-batch; that must stay below
        // k_line_tolerance of the step (docs/adr/0005).
        constexpr double k_line_tolerance = 1e-4;
        const double extended = static_cast<double>(m - (s0 + 2 * step)) / static_cast<double>(step);
        const double line = c.step_s + d2 * extended;
        if (std::abs(d2 - d1) * extended <= k_line_tolerance * line) {
            outcome = extrapolate(b, c, s0 + step, s0 + 2 * step, m);
            outcome.trace = c.trace;
            outcome.counters = c.counters;
            outcome.tracks = c.tracks;
            r.extrapolated = true;
        } else {
            outcome = simulate(setup, config, {m}, kept).front();
            r.simulated.push_back(m);
            r.sampled_step_s.push_back(outcome.step_s);
            r.events += outcome.events;
        }
    }
    if (kept != nullptr && records != loaded) {
        // The records only save time: a directory that cannot take them costs the next run that, not this one.
        try {
            cache.store_text(memo_name, memo_file(records));
            cache.trim(std::string(k_memo_prefix), std::string(k_memo_suffix), k_memo_records_max_bytes, memo_name);
        } catch (const UserError& e) {
            logger("memo")->warn("collective memo records not kept: {}", e.what());
        }
    }
    r.step_time_s = outcome.step_s;
    r.trace = std::move(outcome.trace);
    r.trace_counters = std::move(outcome.counters);
    r.trace_tracks = std::move(outcome.tracks);
    r.stages = outcome.stages;
    r.collectives = outcome.collectives;
    r.transfers = outcome.transfers;
    r.busy_periods_replayed = outcome.replayed;
    r.busy_periods_simulated = outcome.simulated;
    r.busy_periods_mirrored = outcome.mirrored;
    r.tokens_per_s = static_cast<double>(tr.tokens_per_step()) / r.step_time_s;
    r.sequences_per_s = static_cast<double>(tr.gbs) / r.step_time_s;
    r.model_flops = workload::model_flops_per_step(setup.model, tr);
    r.hardware_flops = workload::step_flops(setup.stages, setup.model, tr).graph_gemm;
    r.peak_flops = static_cast<double>(cluster.chips()) * chip.cores * chip.core_peak_flops(tr.dtype);
    r.mfu = r.model_flops / (r.step_time_s * r.peak_flops);
    r.hfu = r.hardware_flops / (r.step_time_s * r.peak_flops);
    r.link_bytes = outcome.link_bytes;
    r.efa_bytes = outcome.efa_bytes;
    r.collective_memory_bytes = outcome.memory_bytes;
    if (chip.memory_model != "hbm")
        logger("energy")->warn("chip.memory.model = {} has no energy model: the HBM's energy is not counted",
                               chip.memory_model);
    const double hbm_j_per_byte = hbm_access_bytes > 0 ? hbm_access_j / hbm_access_bytes : 0.0;
    const double standby_w = standby_s > 0 ? standby_ws / standby_s : 0.0;
    energy.hbm += (stream_bytes + outcome.memory_bytes) * hbm_j_per_byte +
                  static_cast<double>(cluster.chips()) * chip.memory_stacks * standby_w * r.step_time_s;
    energy.links = outcome.link_bytes * 8 * config.get_energy("cluster.link.energy_per_bit").joules +
                   outcome.efa_bytes * 8 * config.get_energy("cluster.efa.energy_per_bit").joules;
    energy.static_energy =
        static_cast<double>(cluster.chips()) * config.get_power("chip.energy.static_power").watts * r.step_time_s;
    r.energy = energy;
    r.energy_per_token_j = energy.total() / static_cast<double>(tr.tokens_per_step());
    r.energy_per_param_j = energy.total() / r.params;
    r.energy_per_param_token_pj = energy.total() / (r.params * static_cast<double>(tr.tokens_per_step())) * 1e12;
    r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    r.config = config.values();
    return r;
}

}  // namespace trnsim::runtime
