#include "systolic_stepped.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace trnsim::testing {
namespace {

constexpr int k_max_pack = 4;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return (a + b - 1) / b;
}

// Static facts about one LoadStationary, plus its observed issue cycle.
struct LsState {
    int op = 0;               // index in the op list (also the weight tag)
    int k = 0;                // logical contraction length
    int c = 0;                // stationary columns
    int k_used = 0;           // physical rows = ceil(k / pack)
    int pack = 1;             // K elements per PE
    std::int64_t busy = 0;    // weight-port occupancy: b (background) or k_used (serial)
    std::int64_t start = -1;  // issue cycle
    std::int64_t ready = -1;  // start + busy: weights fully issued (background) / shifted in (serial)
};

// Static facts about one MultiplyMoving, plus its observed progress.
struct MmState {
    int op = 0;      // index in the op list
    int ls = 0;      // index into the LS list of the stationary it uses
    int n = 0;       // moving vectors
    int k = 0;       // logical contraction length (equal to its stationary's)
    int k_used = 0;  // physical rows used
    int c_used = 0;  // physical columns used
    int pack = 1;
    int rate = 1;
    int bank = 0;
    bool accumulate = false;
    bool first_after_ls = false;  // uses a different stationary than the previous MM -> swaps (background)
    std::int64_t ii = 0;          // moving-port occupancy: rate * max(N, min(mm_init_latency, C_used))
    std::int64_t start = -1;
    std::int64_t end = -1;    // observed: cycle after the last PSUM write
    std::int64_t writes = 0;  // PSUM elements written so far
};

// Moving-data register of one PE: one moving vector's pack elements, flowing right.
struct MovingReg {
    int mm = -1;        // index into the MM list; -1 = empty (bubble)
    int n = 0;          // moving vector index within the MM
    bool swap = false;  // first vector of a swapping MM: copy shadow -> active before use
    std::array<float, k_max_pack> x{};
};

// Partial-sum register of one PE: the value leaving the PE downwards this cycle.
struct PsumReg {
    int mm = -1;  // -1 = empty
    int n = 0;
    float value = 0.0f;
};

// One weight set (active or shadow) of one PE, tagged with the LS op and LS row it came from.
struct WeightReg {
    std::array<float, k_max_pack> w{};
    int tag_op = -1;
    int tag_row = -1;
};

// One PSUM bank; `writer` holds the MM index that last wrote each element (write-order self-check).
struct Bank {
    Eigen::MatrixXf value;
    Eigen::MatrixXi writer;
    int newest = -1;  // highest MM index that has written this bank
    bool sized = false;
};

class SteppedSimulator {
public:
    SteppedSimulator(const SteppedArrayConfig& config, const std::vector<SteppedOp>& ops)
        : m_config(config), m_ops(ops) {}

    SteppedResult run() {
        validate_config();
        plan();
        allocate();

        const std::int64_t bound = cycle_bound();
        for (std::int64_t t = 0;; ++t) {
            if (t > bound) {
                throw std::logic_error("run_stepped: no progress (simulation exceeded its cycle bound)");
            }
            issue(t);
            if (m_next_op == m_ops.size() && m_mm_done == m_mms.size()) {
                break;
            }
            step_array(t);
            update_weights(t);
        }
        return collect();
    }

private:
    // ---- setup -----------------------------------------------------------------------------------

    void validate_config() const {
        const SteppedArrayConfig& c = m_config;
        if (c.rows < 1 || c.cols < 1) throw std::invalid_argument("run_stepped: rows and cols must be >= 1");
        if (c.mm_init_latency < 0) throw std::invalid_argument("run_stepped: mm_init_latency must be >= 0");
        if (c.ls_cols_per_cycle < 1) {
            throw std::invalid_argument("run_stepped: ls_cols_per_cycle must be >= 1");
        }
        if (c.interlock_slack < 0) throw std::invalid_argument("run_stepped: interlock_slack must be >= 0");
    }

    // Validates the op list and derives the static per-op facts (occupancies, used rows/cols, swaps).
    void plan() {
        m_op_ls.assign(m_ops.size(), -1);
        m_op_mm.assign(m_ops.size(), -1);
        std::vector<std::pair<Eigen::Index, Eigen::Index>> bank_dims;  // program-order PSUM shapes
        int current_ls = -1;
        int previous_mm_ls = -1;
        for (std::size_t i = 0; i < m_ops.size(); ++i) {
            const SteppedOp& op = m_ops[i];
            const std::string where = "run_stepped: op " + std::to_string(i) + ": ";
            if (op.data.size() == 0) throw std::invalid_argument(where + "empty data");
            if (op.rate != 1 && op.rate != 4) throw std::invalid_argument(where + "rate must be 1 or 4");
            if (op.pack != 1 && op.pack != 2 && op.pack != 4) {
                throw std::invalid_argument(where + "pack must be 1, 2 or 4");
            }
            const int k = static_cast<int>(op.data.rows());
            if (k > m_config.rows * op.pack) throw std::invalid_argument(where + "K exceeds rows * pack");

            if (op.kind == SteppedOp::Kind::load_stationary) {
                const int c = static_cast<int>(op.data.cols());
                if (c > m_config.cols) throw std::invalid_argument(where + "C exceeds cols");
                LsState ls;
                ls.op = static_cast<int>(i);
                ls.k = k;
                ls.c = c;
                ls.pack = op.pack;
                ls.k_used = static_cast<int>(ceil_div(k, op.pack));
                ls.busy = m_config.background_preload ? op.rate * ceil_div(c, m_config.ls_cols_per_cycle)
                                                      : static_cast<std::int64_t>(ls.k_used);
                current_ls = static_cast<int>(m_lss.size());
                m_op_ls[i] = current_ls;
                m_lss.push_back(ls);
                continue;
            }

            if (current_ls < 0) {
                throw std::invalid_argument(where + "MultiplyMoving before any LoadStationary");
            }
            const LsState& ls = m_lss[static_cast<std::size_t>(current_ls)];
            if (k != ls.k) throw std::invalid_argument(where + "K differs from the stationary's K");
            if (op.pack != ls.pack) {
                throw std::invalid_argument(where + "pack differs from the stationary's pack");
            }
            if (op.psum_bank < 0) throw std::invalid_argument(where + "negative psum_bank");

            MmState mm;
            mm.op = static_cast<int>(i);
            mm.ls = current_ls;
            mm.n = static_cast<int>(op.data.cols());
            mm.k = k;
            mm.k_used = ls.k_used;
            mm.c_used = ls.c;
            mm.pack = op.pack;
            mm.rate = op.rate;
            mm.bank = op.psum_bank;
            mm.accumulate = op.accumulate;
            mm.first_after_ls = current_ls != previous_mm_ls;
            mm.ii = static_cast<std::int64_t>(op.rate) *
                    std::max<std::int64_t>(mm.n, std::min(m_config.mm_init_latency, mm.c_used));
            previous_mm_ls = current_ls;

            // PSUM shape: overwrite (re)sizes the bank, accumulate must match the bank's shape.
            const auto bank = static_cast<std::size_t>(op.psum_bank);
            if (bank_dims.size() <= bank) bank_dims.resize(bank + 1, {-1, -1});
            const std::pair<Eigen::Index, Eigen::Index> dims{mm.c_used, mm.n};
            if (op.accumulate && bank_dims[bank].first >= 0 && bank_dims[bank] != dims) {
                throw std::invalid_argument(where + "accumulate into a PSUM bank of a different shape");
            }
            bank_dims[bank] = dims;

            m_op_mm[i] = static_cast<int>(m_mms.size());
            m_mms.push_back(mm);
        }
        m_banks.resize(bank_dims.size());
    }

    void allocate() {
        const auto pes = static_cast<std::size_t>(m_config.rows) * static_cast<std::size_t>(m_config.cols);
        m_active.assign(pes, WeightReg{});
        m_shadow.assign(pes, WeightReg{});
        m_moving.assign(pes, MovingReg{});
        m_psum.assign(pes, PsumReg{});
        m_incoming.assign(static_cast<std::size_t>(m_config.rows), MovingReg{});
    }

    // Generous upper bound on the schedule length: every op waits at most for the full occupancy and drain
    // of everything before it.
    std::int64_t cycle_bound() const {
        std::int64_t bound = 16 + m_config.interlock_slack;
        for (const LsState& ls : m_lss) bound += ls.busy + 1;
        for (const MmState& mm : m_mms) {
            bound += mm.ii + static_cast<std::int64_t>(mm.rate) * mm.n + m_config.rows + m_config.cols + 1;
        }
        return bound;
    }

    std::size_t pe(int r, int c) const {
        return static_cast<std::size_t>(r) * static_cast<std::size_t>(m_config.cols) + static_cast<std::size_t>(c);
    }

    // ---- issue ports -----------------------------------------------------------------------------

    // Issues ops in program order while the interlocks (evaluated on the observed state) allow it. The
    // weight port and the moving port are both in order and each op's interlocks refer only to earlier
    // ops, so a single program-order pointer models both ports; one LS and one MM may issue in one cycle.
    void issue(std::int64_t t) {
        while (m_next_op < m_ops.size()) {
            const std::size_t i = m_next_op;
            if (m_op_ls[i] >= 0) {
                if (!can_issue_ls(t)) return;
                issue_ls(m_lss[static_cast<std::size_t>(m_op_ls[i])], t);
            } else {
                MmState& mm = m_mms[static_cast<std::size_t>(m_op_mm[i])];
                if (!can_issue_mm(mm, t)) return;
                issue_mm(mm, t);
            }
            ++m_next_op;
        }
    }

    bool can_issue_ls(std::int64_t t) const {
        // Weight port free (previous LS fully issued / shifted in).
        if (t < m_weight_port_free) return false;
        if (m_config.background_preload) {
            // The shadow is free once the swap wave of the latest earlier MM has started: that MM is earlier
            // in program order, hence already issued (at a cycle <= t) when this LS is considered.
            return true;
        }
        // Serial preload shifts the active weights: the array must be empty (every earlier MM finished).
        return m_mm_done == m_mm_issued;
    }

    bool can_issue_mm(const MmState& mm, std::int64_t t) const {
        if (t < m_moving_port_free) return false;
        const LsState& ls = m_lss[static_cast<std::size_t>(mm.ls)];
        if (t < ls.ready - m_config.interlock_slack) return false;  // weights fully issued / shifted in
        if (!m_config.fold_overlap && mm.first_after_ls && m_mm_issued > 0) {
            const MmState& previous = m_mms[m_mm_issued - 1];
            if (previous.end < 0) return false;  // array not drained yet
        }
        return psum_order_allows(mm, t);
    }

    // Write-order scoreboard (see SteppedArrayConfig::psum_order_interlock). Result n of an MM issued at s
    // reaches PSUM at s + rate*n + K_used + c - 1; ours must land strictly after the same element of every
    // earlier MM the interlock covers. Only called for the next MM in program order: every earlier MM issued.
    bool psum_order_allows(const MmState& mm, std::int64_t t) const {
        using Interlock = SteppedArrayConfig::PsumOrderInterlock;
        const Interlock mode = m_config.psum_order_interlock;
        if (mode == Interlock::none) return true;
        for (std::size_t i = m_mm_issued; i-- > 0;) {
            const MmState& earlier = m_mms[i];
            if (earlier.bank != mm.bank) {
                if (mode == Interlock::previous_mm) return true;
                continue;
            }
            // per_bank: extra delay so that the last common vector also lands in order when the earlier
            // MM streams more slowly (rate term zero for equal rates).
            const std::int64_t rate_gap =
                mode == Interlock::per_bank
                    ? std::max<std::int64_t>(
                          0, static_cast<std::int64_t>(earlier.rate - mm.rate) * (std::min(earlier.n, mm.n) - 1))
                    : 0;
            if (t + mm.k_used - 1 <= earlier.start + earlier.k_used - 1 + rate_gap) return false;
            if (mode == Interlock::previous_mm) return true;
        }
        return true;
    }

    void issue_ls(LsState& ls, std::int64_t t) {
        ls.start = t;
        ls.ready = t + ls.busy;
        m_weight_port_free = ls.ready;
        m_loading.push_back(static_cast<int>(&ls - m_lss.data()));
    }

    void issue_mm(MmState& mm, std::int64_t t) {
        mm.start = t;
        m_moving_port_free = t + mm.ii;
        m_streaming.push_back(static_cast<int>(&mm - m_mms.data()));
        ++m_mm_issued;
    }

    // ---- array datapath --------------------------------------------------------------------------

    // Left-edge injection: moving vector n of an MM enters row r (elements pack*r .. pack*r+pack-1) at cycle
    // start + rate*n + r.
    bool inject(std::int64_t t) {
        bool any = false;
        for (MovingReg& slot : m_incoming) slot.mm = -1;
        for (std::size_t s = 0; s < m_streaming.size();) {
            const int index = m_streaming[s];
            const MmState& mm = m_mms[static_cast<std::size_t>(index)];
            const SteppedOp& op = m_ops[static_cast<std::size_t>(mm.op)];
            const std::int64_t last_injection =
                mm.start + static_cast<std::int64_t>(mm.rate) * (mm.n - 1) + (mm.k_used - 1);
            for (int r = 0; r < mm.k_used; ++r) {
                const std::int64_t d = t - mm.start - r;
                if (d < 0 || d % mm.rate != 0 || d / mm.rate >= mm.n) continue;
                MovingReg& slot = m_incoming[static_cast<std::size_t>(r)];
                if (slot.mm >= 0) {
                    throw std::logic_error("run_stepped: two moving vectors injected into one row");
                }
                slot.mm = index;
                slot.n = static_cast<int>(d / mm.rate);
                slot.swap = m_config.background_preload && mm.first_after_ls && slot.n == 0;
                for (int q = 0; q < k_max_pack; ++q) {
                    const int k = mm.pack * r + q;
                    slot.x[static_cast<std::size_t>(q)] = (q < mm.pack && k < mm.k) ? op.data(k, slot.n) : 0.0f;
                }
                any = true;
            }
            if (t >= last_injection) {
                m_streaming.erase(m_streaming.begin() + static_cast<std::ptrdiff_t>(s));
            } else {
                ++s;
            }
        }
        return any;
    }

    // One clock of the PE grid: moving registers advance one PE right, every PE holding a moving vector
    // (swaps if flagged and) performs its pack MACs on the partial sum arriving from above, partial sums
    // advance one PE down, and results leaving row K_used-1 are written to PSUM.
    void step_array(std::int64_t t) {
        const bool injected = inject(t);
        if (!injected && !m_array_busy) return;  // nothing in flight: registers would only shift bubbles

        const int rows = m_config.rows;
        const int cols = m_config.cols;
        for (int r = 0; r < rows; ++r) {
            for (int c = cols - 1; c > 0; --c) m_moving[pe(r, c)] = m_moving[pe(r, c - 1)];
            m_moving[pe(r, 0)] = m_incoming[static_cast<std::size_t>(r)];
        }

        bool busy = false;
        // Bottom-up so that each PE reads the partial sum its upper neighbour produced in the previous cycle.
        for (int r = rows - 1; r >= 0; --r) {
            for (int c = 0; c < cols; ++c) {
                const std::size_t idx = pe(r, c);
                const MovingReg& moving = m_moving[idx];
                PsumReg out;
                if (moving.mm >= 0) {
                    busy = true;
                    WeightReg& active = m_active[idx];
                    if (moving.swap) active = m_shadow[idx];  // start of cycle: shadow -> active
                    const MmState& mm = m_mms[static_cast<std::size_t>(moving.mm)];
                    if (r < mm.k_used && c < mm.c_used) out = mac(t, r, c, moving, mm, active);
                }
                m_psum[idx] = out;
            }
        }
        m_array_busy = busy;
    }

    PsumReg mac(std::int64_t t, int r, int c, const MovingReg& moving, const MmState& mm, const WeightReg& active) {
        const LsState& ls = m_lss[static_cast<std::size_t>(mm.ls)];
        if (active.tag_op != ls.op || active.tag_row != r) {
            throw std::logic_error("run_stepped: hazard: PE(" + std::to_string(r) + "," + std::to_string(c) +
                                   ") at cycle " + std::to_string(t) + " holds weights of op " +
                                   std::to_string(active.tag_op) + " row " + std::to_string(active.tag_row) +
                                   " but MM op " + std::to_string(mm.op) + " needs op " + std::to_string(ls.op) +
                                   " row " + std::to_string(r));
        }
        float p = 0.0f;
        if (r > 0) {
            const PsumReg& in = m_psum[pe(r - 1, c)];
            if (in.mm != moving.mm || in.n != moving.n) {
                throw std::logic_error("run_stepped: partial sum misaligned with moving data at cycle " +
                                       std::to_string(t));
            }
            p = in.value;
        }
        for (int q = 0; q < mm.pack; ++q) {
            if (mm.pack * r + q >= mm.k) break;  // padding lane of the last physical row
            // Separate rounded multiply and add (no fused multiply-add).
            volatile float product = active.w[static_cast<std::size_t>(q)] * moving.x[static_cast<std::size_t>(q)];
            p = p + product;
        }
        if (r == mm.k_used - 1) {
            write_psum(t, moving.mm, c, moving.n, p);
            return PsumReg{};  // leaves the array
        }
        return PsumReg{moving.mm, moving.n, p};
    }

    void write_psum(std::int64_t t, int mm_index, int c, int n, float p) {
        MmState& mm = m_mms[static_cast<std::size_t>(mm_index)];
        Bank& bank = m_banks[static_cast<std::size_t>(mm.bank)];
        bool store = true;
        if (mm_index > bank.newest) {
            bank.newest = mm_index;
            const bool same_shape = bank.sized && bank.value.rows() == mm.c_used && bank.value.cols() == mm.n;
            if (!same_shape) {  // first write of an overwriting MM of another shape (or first write ever)
                bank.value = Eigen::MatrixXf::Zero(mm.c_used, mm.n);
                bank.writer = Eigen::MatrixXi::Constant(mm.c_used, mm.n, -1);
                bank.sized = true;
            }
        } else if (mm_index < bank.newest && (c >= bank.value.rows() || n >= bank.value.cols())) {
            store = false;  // late write of an older MM outside the shape a later overwrite gave the bank
        }
        if (store) {
            int& writer = bank.writer(c, n);
            if (m_config.check_psum_order && writer > mm_index) {
                throw std::logic_error("run_stepped: PSUM write-order hazard: bank " + std::to_string(mm.bank) +
                                       " element (" + std::to_string(c) + "," + std::to_string(n) +
                                       ") written by MM op " + std::to_string(mm.op) + " at cycle " +
                                       std::to_string(t) + " after a later MM (op " +
                                       std::to_string(m_mms[static_cast<std::size_t>(writer)].op) + ")");
            }
            float& value = bank.value(c, n);
            value = mm.accumulate ? value + p : p;
            writer = mm_index;
        }
        ++mm.writes;
        if (mm.writes == static_cast<std::int64_t>(mm.c_used) * mm.n) {
            mm.end = t + 1;
            ++m_mm_done;
            const std::int64_t expected =
                mm.start + static_cast<std::int64_t>(mm.rate) * (mm.n - 1) + mm.k_used + mm.c_used - 1;
            if (mm.end != expected) throw std::logic_error("run_stepped: MM drained at an unexpected cycle");
        }
    }

    // End of cycle t: weight-port writes. Background: the diagonal shadow-write wave of every LS in
    // progress (PE(r, c) written at the end of cycle start + busy - 1 + r + c). Serial: one shift of the
    // active weights down by one row, the next stationary row entering row 0 (last row first).
    void update_weights(std::int64_t t) {
        for (std::size_t i = 0; i < m_loading.size();) {
            const LsState& ls = m_lss[static_cast<std::size_t>(m_loading[i])];
            const bool finished = m_config.background_preload ? shadow_wave(ls, t) : serial_shift(ls, t);
            if (finished) {
                m_loading.erase(m_loading.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                ++i;
            }
        }
    }

    bool shadow_wave(const LsState& ls, std::int64_t t) {
        const std::int64_t d = t - (ls.start + ls.busy - 1);
        const std::int64_t last = (ls.k_used - 1) + (ls.c - 1);
        if (d < 0) return false;
        const SteppedOp& op = m_ops[static_cast<std::size_t>(ls.op)];
        const int r_begin = static_cast<int>(std::max<std::int64_t>(0, d - (ls.c - 1)));
        const int r_end = static_cast<int>(std::min<std::int64_t>(ls.k_used - 1, d));
        for (int r = r_begin; r <= r_end; ++r) {
            const int c = static_cast<int>(d - r);
            load_row_weights(m_shadow[pe(r, c)], op, ls, r, c);
        }
        return d >= last;
    }

    bool serial_shift(const LsState& ls, std::int64_t t) {
        const std::int64_t i = t - ls.start;
        if (i < 0) return false;
        const SteppedOp& op = m_ops[static_cast<std::size_t>(ls.op)];
        const int entering = ls.k_used - 1 - static_cast<int>(i);
        for (int c = 0; c < ls.c; ++c) {
            for (int r = m_config.rows - 1; r > 0; --r) m_active[pe(r, c)] = m_active[pe(r - 1, c)];
            load_row_weights(m_active[pe(0, c)], op, ls, entering, c);
        }
        return i >= ls.k_used - 1;
    }

    // Fills one PE weight register with stationary row `row` (elements pack*row .. pack*row+pack-1, zero
    // padded) of column c and tags it.
    static void load_row_weights(WeightReg& reg, const SteppedOp& op, const LsState& ls, int row, int c) {
        for (int q = 0; q < k_max_pack; ++q) {
            const int k = ls.pack * row + q;
            reg.w[static_cast<std::size_t>(q)] = (q < ls.pack && k < ls.k) ? op.data(k, c) : 0.0f;
        }
        reg.tag_op = ls.op;
        reg.tag_row = row;
    }

    SteppedResult collect() const {
        SteppedResult result;
        result.timing.resize(m_ops.size());
        for (const LsState& ls : m_lss) {
            result.timing[static_cast<std::size_t>(ls.op)] = SteppedOpTiming{ls.start, ls.ready};
        }
        for (const MmState& mm : m_mms) {
            result.timing[static_cast<std::size_t>(mm.op)] = SteppedOpTiming{mm.start, mm.end};
            result.cycles = std::max(result.cycles, mm.end);
        }
        result.psum.reserve(m_banks.size());
        for (const Bank& bank : m_banks) result.psum.push_back(bank.value);
        return result;
    }

    const SteppedArrayConfig& m_config;
    const std::vector<SteppedOp>& m_ops;

    std::vector<LsState> m_lss;
    std::vector<MmState> m_mms;
    std::vector<int> m_op_ls;  // op index -> LS index or -1
    std::vector<int> m_op_mm;  // op index -> MM index or -1
    std::vector<Bank> m_banks;

    // Issue state (port-free cycles as scalars).
    std::size_t m_next_op = 0;
    std::int64_t m_weight_port_free = 0;
    std::int64_t m_moving_port_free = 0;
    std::size_t m_mm_issued = 0;
    std::size_t m_mm_done = 0;
    std::vector<int> m_streaming;  // MMs still injecting moving vectors
    std::vector<int> m_loading;    // LSs whose weight writes / shifts are still in progress

    // Per-PE registers, row-major [r * cols + c].
    std::vector<WeightReg> m_active;
    std::vector<WeightReg> m_shadow;
    std::vector<MovingReg> m_moving;
    std::vector<PsumReg> m_psum;
    std::vector<MovingReg> m_incoming;  // per row: what enters column 0 this cycle
    bool m_array_busy = false;
};

}  // namespace

SteppedResult run_stepped(const SteppedArrayConfig& config, const std::vector<SteppedOp>& ops) {
    return SteppedSimulator(config, ops).run();
}

}  // namespace trnsim::testing
