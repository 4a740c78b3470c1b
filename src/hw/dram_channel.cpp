#include "trnsim/hw/dram_channel.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#if defined(__GNUC__) || defined(__clang__)
#define TRNSIM_FLATTEN __attribute__((flatten))
#else
#define TRNSIM_FLATTEN
#endif

// The row-candidate scan has an AVX-512 version (chosen at run time, same results) on x86-64 with GCC/Clang.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TRNSIM_SCAN_AVX512 1
#include <immintrin.h>
#else
#define TRNSIM_SCAN_AVX512 0
#endif

namespace trnsim::hw::dram {

namespace {

inline void raise(std::uint64_t& v, std::uint64_t t) {
    if (t > v) v = t;
}
inline std::uint64_t max2(std::uint64_t a, std::uint64_t b) {
    return a > b ? a : b;
}
// Branch-free max for the candidate scans, whose comparisons are unpredictable.
inline std::uint64_t max_nb(std::uint64_t a, std::uint64_t b) {
    return a ^ ((a ^ b) & (std::uint64_t{0} - static_cast<std::uint64_t>(b > a)));
}
inline std::uint64_t min_nb(std::uint64_t a, std::uint64_t b) {
    return a ^ ((a ^ b) & (std::uint64_t{0} - static_cast<std::uint64_t>(b < a)));
}
inline int lowest_bit(std::uint64_t m) {
    return __builtin_ctzll(m);
}
inline std::uint64_t bit(int b) {
    return std::uint64_t{1} << b;
}

// Candidate keys packed into one word so that one unsigned min gives the earliest tick, then the oldest:
// (tick - now) << 40 | (seq - oldest seq) << 6 | bank. Ticks fit: every earliest-issue time is an issue
// tick <= now plus a sum of timing values, each < 2^20 (Timing::validate); seq offsets below 2^34 are
// checked by the caller.
constexpr int kSeqShift = 6, kTickShift = 40;
constexpr std::uint64_t kSeqSpan = std::uint64_t{1} << (kTickShift - kSeqShift);

// A request's age key, seq << 6 | bank: the low bits of a packed candidate key, kept per bank ready-made.
inline std::uint64_t age_key(std::uint64_t seq, int b) {
    return seq << kSeqShift | static_cast<std::uint64_t>(b);
}
inline std::uint64_t seq_of(std::uint64_t key) {
    return key >> kSeqShift;
}

}  // namespace

void ControllerSpec::validate() const {
    if (read_queue < 1 || write_queue < 1)
        throw std::invalid_argument("dram controller: queues must hold >= 1 request");
    if (write_low < 0 || write_low >= write_high || write_high > write_queue)
        throw std::invalid_argument("dram controller: need 0 <= write_low < write_high <= write_queue");
}

void PseudoChannel::DoneQueue::pop() {
    if (++head == items.size()) {
        items.clear();
        head = 0;
    } else if (head >= 4096 && head * 2 >= items.size()) {
        items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(head));
        head = 0;
    }
}

PseudoChannel::PseudoChannel(const Organization& org, const Timing& timing, const ControllerSpec& spec)
    : m_org(org), m_t(timing), m_spec(spec) {
    m_org.validate();
    m_t.validate();
    m_spec.validate();
    if (m_spec.refresh == RefreshMode::all_bank && m_t.REFI == 0)
        throw std::invalid_argument("dram pseudo-channel: all-bank refresh needs REFI");
    if (m_spec.refresh == RefreshMode::per_bank && m_t.REFIpb == 0)
        throw std::invalid_argument("dram pseudo-channel: per-bank refresh needs REFIpb");
    m_banks = m_org.banks();
    m_bank_mask = m_banks == 64 ? ~std::uint64_t{0} : bit(m_banks) - 1;
    m_wr_to_pre = m_t.CWL + m_t.BL + m_t.WR;
    m_rd_done = m_t.CL + m_t.BL;
    m_wr_done = m_t.CWL + m_t.BL;
    std::size_t flat = 0;
    for (int s = 0; s < m_org.sids; ++s)
        for (int g = 0; g < m_org.bank_groups; ++g)
            for (int b = 0; b < m_org.banks_per_group; ++b, ++flat) {
                m_sid_of[flat] = static_cast<std::uint8_t>(s);
                m_bg_of[flat] = static_cast<std::uint8_t>(s * m_org.bank_groups + g);
            }
    const auto banks = static_cast<std::size_t>(m_banks);
    m_open_row.fill(-1);
    m_closed = m_bank_mask;
    m_bq.resize(banks);
    for (int q = 0; q < 2; ++q) {
        std::fill(std::begin(m_head_key[q]), std::end(m_head_key[q]), kNone);
        std::fill(std::begin(m_hit_key[q]), std::end(m_hit_key[q]), kNone);
    }

    const int capacity = m_spec.read_queue + m_spec.write_queue;
    m_slots.resize(static_cast<std::size_t>(capacity));
    m_groups.resize(static_cast<std::size_t>(capacity));
    for (int i = 0; i < capacity; ++i) {
        m_slots[static_cast<std::size_t>(i)].bank_next = i + 1 < capacity ? i + 1 : -1;
        m_groups[static_cast<std::size_t>(i)].next = i + 1 < capacity ? i + 1 : -1;
    }
    m_free_slot = 0;
    m_free_group = 0;
    m_future.reserve(static_cast<std::size_t>(capacity));
    m_done[0].items.reserve(static_cast<std::size_t>(capacity) * 2);
    m_done[1].items.reserve(static_cast<std::size_t>(capacity) * 2);

    if (m_spec.refresh == RefreshMode::all_bank) {
        m_ref_interval = static_cast<std::uint64_t>(m_t.REFI);
    } else if (m_spec.refresh == RefreshMode::per_bank) {
        m_ref_interval = static_cast<std::uint64_t>(m_t.REFIpb);
        m_refpb_pending.assign(2 * banks + 2, 0);
    }
    m_ref_due = m_spec.refresh == RefreshMode::off ? kNone : m_ref_interval;
}

TRNSIM_FLATTEN void PseudoChannel::enqueue(const Request& r) {
    if (!can_accept(r.write)) throw std::logic_error("dram pseudo-channel: enqueue into a full queue");
    if (r.sid < 0 || r.sid >= m_org.sids || r.bank_group < 0 || r.bank_group >= m_org.bank_groups || r.bank < 0 ||
        r.bank >= m_org.banks_per_group || r.row < 0 || r.row >= m_org.rows || r.column < 0 ||
        r.column >= m_org.columns)
        throw std::out_of_range("dram pseudo-channel: request " + std::to_string(r.id) +
                                " addresses no bank/row/column of the organization");
    const int s = m_free_slot;
    Slot& x = m_slots[static_cast<std::size_t>(s)];
    m_free_slot = x.bank_next;
    x.id = r.id;
    x.arrival = r.arrival;
    x.bank = static_cast<std::uint8_t>(m_org.bank_index(r.sid, r.bank_group, r.bank));
    x.row = r.row;
    x.write = r.write;
    m_next_valid = false;
    if (r.arrival <= m_now) {
        // Requests enqueued earlier for this tick (or before) come first: admission follows enqueue order.
        admit_arrived(m_now);
        admit(s);
        return;
    }
    ++m_waiting[r.write ? 1 : 0];
    if (m_future_head == m_future.size() || m_slots[static_cast<std::size_t>(m_future.back())].arrival <= r.arrival) {
        m_future.push_back(s);
    } else {
        auto it = std::upper_bound(
            m_future.begin() + static_cast<std::ptrdiff_t>(m_future_head), m_future.end(), r.arrival,
            [this](std::uint64_t a, int slot) { return a < m_slots[static_cast<std::size_t>(slot)].arrival; });
        m_future.insert(it, s);
    }
}

namespace {

constexpr std::uint32_t kBucketFull = 15;
inline int bucket_shift(int row) {
    return (row & 7) * 4;
}

}  // namespace

int PseudoChannel::find_group(const BankQueue& bq, int row) const {
    if ((bq.row_buckets >> bucket_shift(row) & kBucketFull) == 0) return -1;
    for (int g = bq.groups; g >= 0; g = m_groups[static_cast<std::size_t>(g)].next) {
        if (m_groups[static_cast<std::size_t>(g)].row == row) return g;
    }
    return -1;
}

void PseudoChannel::admit(int s) {
    Slot& x = m_slots[static_cast<std::size_t>(s)];
    const std::uint64_t seq = m_seq++;
    const int q = x.write ? 1 : 0;
    const int b = x.bank;
    BankQueue& bq = bank_queue(q, b);
    const bool was_empty = bq.head < 0;
    int g = find_group(bq, x.row);
    if (g < 0) {
        g = m_free_group;
        Group& fresh = m_groups[static_cast<std::size_t>(g)];
        m_free_group = fresh.next;
        fresh = Group{0, x.row, -1, -1, 0, -1, bq.groups};
        if (bq.groups >= 0) m_groups[static_cast<std::size_t>(bq.groups)].prev = g;
        bq.groups = g;
        const int shift = bucket_shift(x.row);
        if ((bq.row_buckets >> shift & kBucketFull) != kBucketFull) bq.row_buckets += std::uint32_t{1} << shift;
        if (m_open_row[static_cast<std::size_t>(b)] == x.row) bq.open_group = g;
    }
    Group& G = m_groups[static_cast<std::size_t>(g)];
    x.group_next = -1;
    if (G.tail >= 0) {
        Slot& tail = m_slots[static_cast<std::size_t>(G.tail)];
        tail.group_next = s;
        tail.group_next_seq = seq;
    } else {
        G.head = s;
        G.head_seq = seq;
    }
    G.tail = s;
    ++G.count;
    x.bank_prev = bq.tail;
    x.bank_next = -1;
    if (bq.tail >= 0) {
        Slot& tail = m_slots[static_cast<std::size_t>(bq.tail)];
        tail.bank_next = s;
        tail.bank_next_seq = seq;
        tail.bank_next_row = x.row;
        tail.bank_next_group = g;
    } else {
        bq.head = s;
        bq.head_row = x.row;
        bq.head_group = g;
        m_classified[q] &= ~bit(b);
        m_head_key[q][b] = age_key(seq, b);
    }
    bq.tail = s;
    ++m_queued[q];
    m_req_mask[q] |= bit(b);
    const bool new_hits = bq.open_group == g && G.count == 1;
    if (new_hits) {
        bq.open_head = s;
        m_cas_mask[q] |= bit(b);
        m_hit_key[q][b] = age_key(seq, b);
    }
    if (q == active_queue()) {
        if (new_hits) {
            consider_col(b);
            // The bank's PRE candidate (if any) is withdrawn: hits come first.
            if (!was_empty && m_rc[1].bank == b) m_rc_dirty[1] = true;
        } else if (was_empty) {
            consider_row(b);
        }
    }
    update_mode();
}

// The drain mode of a tick follows from the previous tick's mode and the queues at the start of the tick
// (after that tick's arrivals): always evaluated from m_prev_mode, so several arrivals in one tick count once.
void PseudoChannel::admit_arrived(std::uint64_t t) {
    while (m_future_head < m_future.size() && m_slots[static_cast<std::size_t>(m_future[m_future_head])].arrival <= t) {
        const int s = m_future[m_future_head++];
        --m_waiting[m_slots[static_cast<std::size_t>(s)].write ? 1 : 0];
        admit(s);
    }
    if (m_future_head == m_future.size()) {
        m_future.clear();
        m_future_head = 0;
    }
}

void PseudoChannel::update_mode() {
    const int reads = m_queued[0], writes = m_queued[1];
    bool write_mode = m_prev_mode;
    if (!write_mode) {
        if (writes >= m_spec.write_high || (reads == 0 && writes > 0)) write_mode = true;
    } else if ((writes <= m_spec.write_low && reads > 0) || writes == 0) {
        write_mode = false;
    }
    if (write_mode != m_write_mode) {
        m_write_mode = write_mode;
        m_col_dirty = true;
        dirty_row();
    }
}

void PseudoChannel::skip_to(std::uint64_t t) {
    if (t <= m_now) return;
    // Ticks m_now .. t-1 had no arrivals and no commands: their mode is m_write_mode.
    if (m_write_mode && !m_prev_mode) ++m_stats.write_drains;
    m_prev_mode = m_write_mode;
    m_now = t;
}

void PseudoChannel::open_bank(int b, int row, int known_group) {
    m_open_row[static_cast<std::size_t>(b)] = row;
    ++m_open_banks;
    m_closed &= ~bit(b);
    for (int q = 0; q < 2; ++q) {
        BankQueue& bq = bank_queue(q, b);
        if (q == active_queue()) {  // the row of the bank's head, which heads its group
            bq.open_group = known_group;
            bq.open_head = bq.head;
            m_cas_mask[q] |= bit(b);
            m_hit_key[q][b] = m_head_key[q][b];
            continue;
        }
        bq.open_group = find_group(bq, row);
        if (bq.open_group >= 0) {
            const Group& G = m_groups[static_cast<std::size_t>(bq.open_group)];
            bq.open_head = G.head;
            m_cas_mask[q] |= bit(b);
            m_hit_key[q][b] = age_key(G.head_seq, b);
        }
    }
}

void PseudoChannel::close_bank(int b) {
    m_open_row[static_cast<std::size_t>(b)] = -1;
    --m_open_banks;
    m_closed |= bit(b);
    for (int q = 0; q < 2; ++q) {
        bank_queue(q, b).open_group = -1;
        m_cas_mask[q] &= ~bit(b);
        m_hit_key[q][b] = kNone;
    }
}

void PseudoChannel::update_act_x(int b) {
    const auto i = static_cast<std::size_t>(b);
    m_act_x[b] = max2(m_bank_act[i], m_bg_act[static_cast<std::size_t>(m_bg_of[i])]);
}

void PseudoChannel::update_bg_act_x(int b) {
    // The group's banks are numbered consecutively from its flat index x banks per group (a multiply: b % banks
    // per group is a division on every ACT).
    const auto g = static_cast<std::size_t>(m_bg_of[static_cast<std::size_t>(b)]);
    const int first = static_cast<int>(g) * m_org.banks_per_group;
    const std::uint64_t group_act = m_bg_act[g];
    for (int o = first; o < first + m_org.banks_per_group; ++o)
        m_act_x[o] = max2(m_bank_act[static_cast<std::size_t>(o)], group_act);
}

// ---- candidates ----------------------------------------------------------------------------------------

std::uint64_t PseudoChannel::col_tick(int q, int b) const {
    const auto s = static_cast<std::size_t>(m_sid_of[static_cast<std::size_t>(b)]);
    const auto g = static_cast<std::size_t>(m_bg_of[static_cast<std::size_t>(b)]);
    const auto i = static_cast<std::size_t>(b);
    if (q) return max2(max2(max2(m_bank_wr[i], m_bg_wr[g]), max2(m_sid_wr[s], m_pc_wr)), max2(m_col_bus, m_now));
    return max2(max2(max2(m_bank_rd[i], m_bg_rd[g]), max2(m_sid_rd[s], m_pc_rd)), max2(m_col_bus, m_now));
}

std::uint64_t PseudoChannel::row_tick(int b) const {
    const auto i = static_cast<std::size_t>(b);
    if (m_closed >> b & 1) return max2(max2(m_act_x[b], max2(m_pc_act, faw_ready())), max2(m_row_bus, m_now));
    return max2(max2(m_bank_pre[i], m_pc_pre), max2(m_row_bus, m_now));
}

void PseudoChannel::consider_col(int b) const {
    const int q = active_queue();
    if (m_col_dirty || !((m_cas_mask[q] & ~m_blocked) >> b & 1)) return;
    const std::uint64_t tick = col_tick(q, b);
    const std::uint64_t seq = seq_of(m_hit_key[q][b]);
    if (tick < m_col.tick || (tick == m_col.tick && seq < m_col.seq)) m_col = Best{tick, seq, b};
}

void PseudoChannel::consider_row(int b) const {
    const int q = active_queue();
    if (!((m_req_mask[q] & ~m_cas_mask[q] & ~m_blocked) >> b & 1)) return;
    const int c = (m_closed >> b & 1) ? 0 : 1;
    if (m_rc_dirty[c]) return;
    const std::uint64_t tick = row_tick(b);
    const std::uint64_t seq = seq_of(m_head_key[q][b]);
    if (tick < m_rc[c].tick || (tick == m_rc[c].tick && seq < m_rc[c].seq)) m_rc[c] = Best{tick, seq, b};
}

std::uint64_t PseudoChannel::act_common() const {
    return max2(max2(m_pc_act, faw_ready()), max2(m_row_bus, m_now));
}

std::uint64_t PseudoChannel::pre_common() const {
    return max2(m_pc_pre, max2(m_row_bus, m_now));
}

// A class's best stays the best when its common terms rise but not above its tick: every member's earliest
// tick max(common, own) is unchanged for those at or above the old best.
void PseudoChannel::revalidate_row_class(int c) const {
    if (m_rc_dirty[c] || m_rc[c].tick == kNone) return;
    if (m_rc[c].tick < (c == 0 ? act_common() : pre_common())) m_rc_dirty[c] = true;
}

namespace {}  // namespace

std::uint64_t scan_class_scalar(std::uint64_t mask, std::uint64_t common, std::uint64_t now, std::uint64_t age_base,
                                const std::uint64_t* x, const std::uint64_t* age) {
    std::uint64_t best = ~std::uint64_t{0};
    for (; mask; mask &= mask - 1) {
        const int b = lowest_bit(mask);
        best = min_nb((max_nb(x[b], common) - now) << kTickShift | (age[b] - age_base), best);
    }
    return best;
}

#if TRNSIM_SCAN_AVX512
// The same keys, eight banks per instruction; a lane outside the mask keeps its minimum.
// (GCC 12's AVX-512 headers trip -Wuninitialized on their own placeholder operands.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) std::uint64_t scan_class_avx512(std::uint64_t mask, std::uint64_t common,
                                                                   std::uint64_t now, std::uint64_t age_base,
                                                                   const std::uint64_t* x, const std::uint64_t* age) {
    const __m512i vc = _mm512_set1_epi64(static_cast<long long>(common));
    const __m512i vn = _mm512_set1_epi64(static_cast<long long>(now));
    const __m512i va = _mm512_set1_epi64(static_cast<long long>(age_base));
    __m512i best = _mm512_set1_epi64(-1);
    for (int k = 0; mask; k += 8, mask >>= 8) {
        const auto m = static_cast<__mmask8>(mask & 0xff);
        const __m512i tick = _mm512_sub_epi64(_mm512_max_epu64(_mm512_loadu_si512(x + k), vc), vn);
        const __m512i key =
            _mm512_or_si512(_mm512_slli_epi64(tick, kTickShift), _mm512_sub_epi64(_mm512_loadu_si512(age + k), va));
        best = _mm512_mask_min_epu64(best, m, best, key);
    }
    return _mm512_reduce_min_epu64(best);
}
#pragma GCC diagnostic pop
bool scan_class_avx512_supported() {
    return __builtin_cpu_supports("avx512f");
}
#else
std::uint64_t scan_class_avx512(std::uint64_t mask, std::uint64_t common, std::uint64_t now, std::uint64_t age_base,
                                const std::uint64_t* x, const std::uint64_t* age) {
    return scan_class_scalar(mask, common, now, age_base, x, age);
}
bool scan_class_avx512_supported() {
    return false;
}
#endif

namespace {

const bool g_scan_avx512 = scan_class_avx512_supported();

inline std::uint64_t scan_class(std::uint64_t mask, std::uint64_t common, std::uint64_t now, std::uint64_t base,
                                const std::uint64_t* x, const std::uint64_t* age) {
    const std::uint64_t age_base = base << kSeqShift;
    return g_scan_avx512 ? scan_class_avx512(mask, common, now, age_base, x, age)
                         : scan_class_scalar(mask, common, now, age_base, x, age);
}

}  // namespace

// A lower bound of the ages (seq) of the queue's requests, within 2^34 of m_seq if the oldest is: raised to
// the oldest (the least head age over the banks) only when m_seq has run that far ahead of it.
std::uint64_t PseudoChannel::seq_base(int q) const {
    if (m_seq - m_seq_base[q] >= kSeqSpan) {
        std::uint64_t oldest = m_seq;
        for (std::uint64_t m = m_req_mask[q]; m; m &= m - 1)
            oldest = std::min(oldest, seq_of(m_head_key[q][lowest_bit(m)]));
        m_seq_base[q] = oldest;
    }
    return m_seq_base[q];
}

void PseudoChannel::rescan_col() const {
    m_col_dirty = false;
    const int q = active_queue();
    std::uint64_t mask = m_cas_mask[q] & ~m_blocked;
    if (!mask) {
        m_col = Best{};
        return;
    }
    const std::uint64_t common = max2(max2(q ? m_pc_wr : m_pc_rd, m_col_bus), m_now);
    const std::uint64_t* bank_t = q ? m_bank_wr.data() : m_bank_rd.data();
    const std::uint64_t* bg_t = q ? m_bg_wr.data() : m_bg_rd.data();
    const std::uint64_t* sid_t = q ? m_sid_wr.data() : m_sid_rd.data();
    const std::uint64_t* ages = m_hit_key[q];
    const std::uint64_t base = seq_base(q);
    if (m_seq - base >= kSeqSpan) {  // a request older than 2^34 admissions: compare unpacked
        Best best;
        for (; mask; mask &= mask - 1) {
            const int b = lowest_bit(mask);
            const std::uint64_t tick = col_tick(q, b), seq = seq_of(ages[b]);
            if (tick < best.tick || (tick == best.tick && seq < best.seq)) best = Best{tick, seq, b};
        }
        m_col = best;
        return;
    }
    const std::uint64_t age_base = base << kSeqShift;
    std::uint64_t key = ~std::uint64_t{0};
    for (; mask; mask &= mask - 1) {
        const int b = lowest_bit(mask);
        const auto i = static_cast<std::size_t>(b);
        const std::uint64_t tick = max_nb(max_nb(common, bank_t[i]), max_nb(bg_t[m_bg_of[i]], sid_t[m_sid_of[i]]));
        key = min_nb((tick - m_now) << kTickShift | (ages[b] - age_base), key);
    }
    m_col = Best{m_now + (key >> kTickShift), base + ((key >> kSeqShift) & (kSeqSpan - 1)), static_cast<int>(key & 63)};
}

// Row candidates of one class: ACT (precharged banks) or PRE (open banks whose row no request of the served
// queue hits); each bank's key packs its earliest tick and its head request's age.
void PseudoChannel::rescan_row_class(int c) const {
    m_rc_dirty[c] = false;
    const int q = active_queue();
    const std::uint64_t mask = m_req_mask[q] & ~m_cas_mask[q] & ~m_blocked & (c == 0 ? m_closed : ~m_closed);
    if (!mask) {
        m_rc[c] = Best{};
        return;
    }
    const std::uint64_t common = c == 0 ? act_common() : pre_common();
    const std::uint64_t* own = c == 0 ? m_act_x : m_bank_pre.data();
    const std::uint64_t base = seq_base(q);
    if (m_seq - base >= kSeqSpan) {  // a request older than 2^34 admissions: compare unpacked
        Best best;
        for (std::uint64_t m = mask; m; m &= m - 1) {
            const int b = lowest_bit(m);
            const std::uint64_t tick = max2(common, own[b]), seq = seq_of(m_head_key[q][b]);
            if (tick < best.tick || (tick == best.tick && seq < best.seq)) best = Best{tick, seq, b};
        }
        m_rc[c] = best;
        return;
    }
    const std::uint64_t key = scan_class(mask, common, m_now, base, own, m_head_key[q]);
    m_rc[c] =
        Best{m_now + (key >> kTickShift), base + ((key >> kSeqShift) & (kSeqSpan - 1)), static_cast<int>(key & 63)};
}

void PseudoChannel::clean_row() const {
    if (m_rc_dirty[0]) rescan_row_class(0);
    if (m_rc_dirty[1]) rescan_row_class(1);
    const bool pre = m_rc[1].tick < m_rc[0].tick || (m_rc[1].tick == m_rc[0].tick && m_rc[1].seq < m_rc[0].seq);
    m_row = pre ? 1 : 0;
}

void PseudoChannel::clean() const {
    if (m_col_dirty) rescan_col();
    clean_row();
}

std::uint64_t PseudoChannel::pending_refresh_tick() const {
    if (m_refab_pending > 0) {
        if (m_open_banks > 0) return max2(max2(m_pc_prea, m_pc_pre), max2(m_row_bus, m_now));
        return max2(m_pc_refab, max2(m_row_bus, m_now));
    }
    const auto b = static_cast<std::size_t>(m_refpb_pending[static_cast<std::size_t>(m_refpb_head)]);
    if (!(m_closed >> b & 1)) return max2(max2(m_bank_pre[b], m_pc_pre), max2(m_row_bus, m_now));
    return max2(max2(m_bank_act[b], m_pc_refpb), max2(m_row_bus, m_now));
}

int PseudoChannel::refresh_target() {
    // Each bank once per round; within a round the controller picks: an idle precharged bank (no queued
    // request, no PRE needed), else an idle bank, else any, first in round-robin order from the last target.
    if ((m_ref_round & m_bank_mask) == m_bank_mask) m_ref_round = 0;
    const std::uint64_t left = m_bank_mask & ~m_ref_round;
    const std::uint64_t idle = left & ~(m_req_mask[0] | m_req_mask[1]);
    const std::uint64_t tiers[3] = {idle & m_closed, idle, left};
    for (const std::uint64_t m : tiers) {
        if (m == 0) continue;
        // First set bit at or after m_ref_next_bank, wrapping.
        const std::uint64_t upper = m & ~(bit(m_ref_next_bank) - 1);
        const int b = lowest_bit(upper ? upper : m);
        m_ref_round |= bit(b);
        return b;
    }
    throw std::logic_error("dram pseudo-channel: no refresh target");
}

void PseudoChannel::recompute_blocked() {
    if (m_refab_pending > 0) {
        m_blocked = m_bank_mask;
        return;
    }
    m_blocked = 0;
    const int n = static_cast<int>(m_refpb_pending.size());
    for (int i = 0; i < m_refpb_count; ++i)
        m_blocked |= bit(m_refpb_pending[static_cast<std::size_t>((m_refpb_head + i) % n)]);
}

// Earliest tick at which a command may issue, a refresh falls due or a request arrives.
std::uint64_t PseudoChannel::next_decision_tick() const {
    if (m_next_valid) return m_next_tick;
    clean();
    std::uint64_t t = std::min({m_col.tick, m_rc[m_row].tick, refresh_tick(), m_ref_due});
    if (m_future_head < m_future.size())
        t = std::min(t, max2(m_slots[static_cast<std::size_t>(m_future[m_future_head])].arrival, m_now));
    m_next_tick = t;
    m_next_valid = true;
    return t;
}

std::uint64_t PseudoChannel::next_event_tick() const {
    std::uint64_t t = next_decision_tick();
    for (const auto& d : m_done) {
        if (!d.empty()) t = std::min(t, d.front().tick);
    }
    return t;
}

// ---- issue ---------------------------------------------------------------------------------------------

void PseudoChannel::log(std::uint64_t t, Command c, int b, int row) {
    if (!m_log) return;
    if (b < 0) {
        m_log->push_back(IssuedCommand{t, c, -1, -1, -1, -1});
        return;
    }
    const int per_sid = m_org.bank_groups * m_org.banks_per_group;
    m_log->push_back(
        IssuedCommand{t, c, b / per_sid, (b % per_sid) / m_org.banks_per_group, b % m_org.banks_per_group, row});
}

// Active and precharged ticks are additive between changes of the open banks and of m_auto_close: call this
// before such a change (and at the end of a run) only.
void PseudoChannel::account(std::uint64_t t) {
    if (t <= m_accounted) return;
    std::uint64_t active = 0;
    if (m_open_banks > 0)
        active = t - m_accounted;
    else if (m_auto_close > m_accounted)
        active = std::min(t, m_auto_close) - m_accounted;
    m_stats.active_ticks += active;
    m_stats.precharged_ticks += (t - m_accounted) - active;
    m_accounted = t;
}

void PseudoChannel::add_refresh_ticks(std::uint64_t t, std::uint64_t duration) {
    const std::uint64_t end = t + duration;
    const std::uint64_t start = max2(t, m_refresh_until);
    if (end > start) m_stats.refresh_ticks += end - start;
    raise(m_refresh_until, end);
}

void PseudoChannel::row_bus_used(std::uint64_t t, int occupancy) {
    m_row_bus = t + static_cast<std::uint64_t>(occupancy);
    if (!m_org.dual_command_bus) m_col_bus = m_row_bus;
}

void PseudoChannel::issue_cas(int b, std::uint64_t t) {
    const int q = active_queue();
    const bool write = q == 1;
    BankQueue& bq = bank_queue(q, b);
    Group& G = m_groups[static_cast<std::size_t>(bq.open_group)];
    const int s = bq.open_head;
    Slot& x = m_slots[static_cast<std::size_t>(s)];
    // Served as the bank's oldest request, it may have been classified by an ACT or PRE; otherwise never.
    const bool classified = x.bank_prev < 0 && (m_classified[q] >> b & 1);

    G.head = x.group_next;
    bq.open_head = x.group_next;
    if (G.head < 0) G.tail = -1;
    if (--G.count == 0) {
        const int g = bq.open_group;
        if (G.prev >= 0)
            m_groups[static_cast<std::size_t>(G.prev)].next = G.next;
        else
            bq.groups = G.next;
        if (G.next >= 0) m_groups[static_cast<std::size_t>(G.next)].prev = G.prev;
        G.next = m_free_group;
        m_free_group = g;
        const int shift = bucket_shift(G.row);
        if (bq.groups < 0)
            bq.row_buckets = 0;
        else if ((bq.row_buckets >> shift & kBucketFull) != kBucketFull)
            bq.row_buckets -= std::uint32_t{1} << shift;
        bq.open_group = -1;
        m_cas_mask[q] &= ~bit(b);
        m_hit_key[q][b] = kNone;
    } else {
        G.head_seq = x.group_next_seq;
        m_hit_key[q][b] = age_key(G.head_seq, b);
    }
    if (x.bank_prev >= 0) {  // the bank's oldest request, and its age key, stay
        Slot& prev = m_slots[static_cast<std::size_t>(x.bank_prev)];
        prev.bank_next = x.bank_next;
        prev.bank_next_seq = x.bank_next_seq;
        prev.bank_next_row = x.bank_next_row;
        prev.bank_next_group = x.bank_next_group;
    } else {
        bq.head = x.bank_next;
        bq.head_row = x.bank_next_row;
        bq.head_group = x.bank_next_group;
        m_classified[q] &= ~bit(b);
        m_head_key[q][b] = bq.head >= 0 ? age_key(x.bank_next_seq, b) : kNone;
    }
    if (x.bank_next >= 0)
        m_slots[static_cast<std::size_t>(x.bank_next)].bank_prev = x.bank_prev;
    else
        bq.tail = x.bank_prev;
    if (bq.head < 0) m_req_mask[q] &= ~bit(b);
    --m_queued[q];
    if (!classified) ++m_stats.row_hits;

    const bool auto_pre = m_spec.page == PagePolicy::closed && bq.open_group < 0 && bank_queue(1 - q, b).open_group < 0;
    const Command cmd = write ? (auto_pre ? Command::WRA : Command::WR) : (auto_pre ? Command::RDA : Command::RD);

    const auto i = static_cast<std::size_t>(b);
    const auto sid = static_cast<std::size_t>(m_sid_of[i]);
    const auto g = static_cast<std::size_t>(m_bg_of[i]);
    const auto T = [t](int v) { return t + static_cast<std::uint64_t>(v); };
    if (!write) {
        raise(m_pc_rd, T(m_t.BL));
        raise(m_pc_wr, T(m_t.RTW));
        raise(m_pc_prea, T(m_t.RTP));
        for (std::size_t o = 0; o < static_cast<std::size_t>(m_org.sids); ++o) {
            if (o != sid) raise(m_sid_rd[o], T(m_t.CCDR));
        }
        raise(m_bank_pre[i], T(m_t.RTP));
    } else {
        raise(m_pc_wr, T(m_t.BL));
        raise(m_pc_rd, T(m_t.CWL + m_t.BL + m_t.WTRS));
        raise(m_pc_prea, T(m_wr_to_pre));
        raise(m_bank_pre[i], T(m_wr_to_pre));
    }
    raise(m_sid_rd[sid], T(m_t.CCDS));
    raise(m_sid_wr[sid], T(m_t.CCDS));
    raise(m_bg_rd[g], T(write ? std::max(m_t.CCDL, m_t.CWL + m_t.BL + m_t.WTRL) : m_t.CCDL));
    raise(m_bg_wr[g], T(m_t.CCDL));
    m_col_bus = T(m_t.col_bus);
    if (!m_org.dual_command_bus) m_row_bus = m_col_bus;

    log(t, cmd, b, x.row);
    if (auto_pre) {
        account(t);
        const int recovery = write ? m_wr_to_pre : m_t.RTP;
        raise(m_bank_act[i], T(recovery + m_t.RP));
        raise(m_pc_refab, T(recovery + m_t.RP));
        raise(m_auto_close, T(recovery));
        update_act_x(b);
        close_bank(b);
        ++m_stats.auto_pres;
        ++m_stats.bank_precharges;
    }

    const std::uint64_t done = T(write ? m_wr_done : m_rd_done);
    if (m_issued) {
        m_issued->push_back(Completion{x.id, done});
        m_issued_kinds |= 1 << q;
    } else {
        m_done[q].items.push_back(Done{done, m_cas_order, x.id});
    }
    ++m_cas_order;
    if (write)
        ++m_stats.writes;
    else
        ++m_stats.reads;
    m_stats.data_bus_busy_ticks += static_cast<std::uint64_t>(m_t.BL);
    const std::uint64_t latency = done - x.arrival;
    m_stats.latency_sum += static_cast<double>(latency);
    raise(m_stats.latency_max, latency);

    x.bank_next = m_free_slot;
    m_free_slot = s;

    m_col_dirty = true;
    if (!m_org.dual_command_bus) {  // the shared bus: the row classes' common terms rose
        revalidate_row_class(0);
        revalidate_row_class(1);
    }
    consider_row(b);
}

void PseudoChannel::issue_act(int b, std::uint64_t t) {
    const int q = active_queue();
    const BankQueue& bq = bank_queue(q, b);
    const int row = bq.head_row;
    account(t);
    const auto i = static_cast<std::size_t>(b);
    const auto T = [t](int v) { return t + static_cast<std::uint64_t>(v); };
    raise(m_bank_act[i], T(m_t.RC));
    raise(m_bank_rd[i], T(m_t.RCDRD));
    raise(m_bank_wr[i], T(m_t.RCDWR));
    raise(m_bank_pre[i], T(m_t.RAS));
    raise(m_bg_act[static_cast<std::size_t>(m_bg_of[i])], T(m_t.RRDL));
    raise(m_pc_act, T(m_t.RRDS));
    raise(m_pc_prea, T(m_t.RAS));
    raise(m_pc_refab, T(m_t.RC));
    update_bg_act_x(b);
    m_faw[m_act_count & 3] = t;
    ++m_act_count;
    row_bus_used(t, m_t.act_bus);
    open_bank(b, row, bq.head_group);
    if (!(m_classified[q] >> b & 1)) {
        m_classified[q] |= bit(b);
        ++m_stats.row_misses;
    }
    ++m_stats.acts;
    log(t, Command::ACT, b, row);
    m_rc_dirty[0] = true;
    revalidate_row_class(1);
    if (!m_org.dual_command_bus)
        m_col_dirty = true;
    else
        consider_col(b);
}

void PseudoChannel::issue_pre(int b, std::uint64_t t, bool for_request) {
    account(t);
    const auto i = static_cast<std::size_t>(b);
    raise(m_bank_act[i], t + static_cast<std::uint64_t>(m_t.RP));
    update_act_x(b);
    raise(m_pc_pre, t + static_cast<std::uint64_t>(m_t.PPD));
    raise(m_pc_refab, t + static_cast<std::uint64_t>(m_t.RP));
    row_bus_used(t, m_t.pre_bus);
    if (for_request) {
        const int q = active_queue();
        if (!(m_classified[q] >> b & 1)) {
            m_classified[q] |= bit(b);
            ++m_stats.row_conflicts;
        }
    }
    log(t, Command::PRE, b, m_open_row[i]);
    close_bank(b);
    ++m_stats.pres;
    ++m_stats.bank_precharges;
    if (for_request) {
        m_rc_dirty[1] = true;
        revalidate_row_class(0);
        consider_row(b);
    } else {
        dirty_row();
    }
    if (!m_org.dual_command_bus) m_col_dirty = true;
}

void PseudoChannel::issue_prea(std::uint64_t t) {
    account(t);
    raise(m_pc_act, t + static_cast<std::uint64_t>(m_t.RP));
    raise(m_pc_pre, t + static_cast<std::uint64_t>(m_t.PPD));
    raise(m_pc_refab, t + static_cast<std::uint64_t>(m_t.RP));
    raise(m_pc_refpb, t + static_cast<std::uint64_t>(m_t.RP));
    row_bus_used(t, m_t.pre_bus);
    log(t, Command::PREA, -1, -1);
    for (int b = 0; b < m_banks; ++b) {
        if (m_open_row[static_cast<std::size_t>(b)] >= 0) {
            close_bank(b);
            ++m_stats.bank_precharges;
        }
    }
    ++m_stats.preas;
    dirty_row();
    if (!m_org.dual_command_bus) m_col_dirty = true;
}

void PseudoChannel::issue_refab(std::uint64_t t) {
    const std::uint64_t end = t + static_cast<std::uint64_t>(m_t.RFC);
    raise(m_pc_act, end);
    raise(m_pc_pre, end);
    raise(m_pc_refab, end);
    raise(m_pc_refpb, end);
    row_bus_used(t, m_t.pre_bus);
    log(t, Command::REFab, -1, -1);
    ++m_stats.refs_ab;
    add_refresh_ticks(t, static_cast<std::uint64_t>(m_t.RFC));
    m_stats.refresh_bank_ticks += static_cast<std::uint64_t>(m_t.RFC) * static_cast<std::uint64_t>(m_banks);
    --m_refab_pending;
    recompute_blocked();
    m_col_dirty = true;
    dirty_row();
}

void PseudoChannel::issue_refpb(int b, std::uint64_t t) {
    raise(m_bank_act[static_cast<std::size_t>(b)], t + static_cast<std::uint64_t>(m_t.RFCpb));
    update_act_x(b);
    raise(m_pc_refab, t + static_cast<std::uint64_t>(m_t.RFCpb));
    raise(m_pc_act, t + static_cast<std::uint64_t>(m_t.RREFD));
    raise(m_pc_refpb, t + static_cast<std::uint64_t>(m_t.RREFD));
    row_bus_used(t, m_t.pre_bus);
    log(t, Command::REFpb, b, -1);
    ++m_stats.refs_pb;
    add_refresh_ticks(t, static_cast<std::uint64_t>(m_t.RFCpb));
    m_stats.refresh_bank_ticks += static_cast<std::uint64_t>(m_t.RFCpb);
    m_refpb_head = (m_refpb_head + 1) % static_cast<int>(m_refpb_pending.size());
    --m_refpb_count;
    recompute_blocked();
    m_col_dirty = true;
    dirty_row();
}

void PseudoChannel::issue_refresh(std::uint64_t t) {
    if (m_refab_pending > 0) {
        if (m_open_banks > 0)
            issue_prea(t);
        else
            issue_refab(t);
        return;
    }
    const int b = m_refpb_pending[static_cast<std::size_t>(m_refpb_head)];
    if (!(m_closed >> b & 1))
        issue_pre(b, t, false);
    else
        issue_refpb(b, t);
}

// ---- the decision loop ---------------------------------------------------------------------------------

void PseudoChannel::pop_completions(std::uint64_t until, std::vector<Completion>& done) {
    // Merge the read and write queues by (tick, issue order).
    for (;;) {
        if (m_done[1].empty() || m_done[0].empty()) {  // one queue: in order already
            DoneQueue& d = m_done[m_done[0].empty() ? 1 : 0];
            while (!d.empty() && d.front().tick < until) {
                done.push_back(Completion{d.front().id, d.front().tick});
                d.pop();
            }
            return;
        }
        DoneQueue* first = nullptr;
        for (auto& d : m_done) {
            if (d.empty() || d.front().tick >= until) continue;
            if (!first || d.front().tick < first->front().tick ||
                (d.front().tick == first->front().tick && d.front().order < first->front().order))
                first = &d;
        }
        if (!first) return;
        done.push_back(Completion{first->front().id, first->front().tick});
        first->pop();
    }
}

void PseudoChannel::take_issued(std::vector<Completion>& done) {
    pop_completions(kNone, done);
}

bool PseudoChannel::run_until(std::uint64_t until, std::vector<Completion>& done, bool stop_when_slot_frees) {
    const bool freed = run_ticks(until, stop_when_slot_frees);
    pop_completions(freed ? m_now : until, done);
    return freed;
}

void PseudoChannel::run_until_taking_issued(std::uint64_t until, std::vector<Completion>& done) {
    if (!m_done[0].empty() || !m_done[1].empty()) {  // completions left by run_until: merge them
        run_ticks(until, false);
        pop_completions(kNone, done);
        return;
    }
    // Nothing held: every RD/WR issued now goes straight to `done`, in issue order. Reads and writes each
    // complete in issue order, so completion order (tick, then issue order) is a stable sort by tick, needed
    // only when a write issued after a read completes before it.
    const std::size_t first = done.size();
    struct Direct {
        std::vector<Completion>*& out;
        ~Direct() { out = nullptr; }
    } direct{m_issued};
    m_issued = &done;
    m_issued_kinds = 0;
    run_ticks(until, false);
    if (m_issued_kinds == 3) {  // reads and writes
        const auto by_tick = [](const Completion& a, const Completion& b) { return a.tick < b.tick; };
        const auto begin = done.begin() + static_cast<std::ptrdiff_t>(first);
        if (!std::is_sorted(begin, done.end(), by_tick)) std::stable_sort(begin, done.end(), by_tick);
    }
}

// The decision loop and enqueue are flattened: every call in them (candidate scans, command issue) is
// inlined, which measured ~9% faster on random traffic than leaving the calls to the compiler's judgement.
TRNSIM_FLATTEN bool PseudoChannel::run_ticks(std::uint64_t until, bool stop_when_slot_frees) {
    bool freed = false;
    while (!freed) {
        const std::uint64_t t = next_decision_tick();
        if (t >= until) break;
        m_next_valid = false;
        skip_to(t);

        // Start of tick t: arrivals, then refreshes falling due.
        admit_arrived(t);
        while (m_ref_due <= t) {
            if (m_spec.refresh == RefreshMode::all_bank) {
                ++m_refab_pending;
            } else {
                const int n = static_cast<int>(m_refpb_pending.size());
                if (m_refpb_count == n) throw std::logic_error("dram pseudo-channel: per-bank refresh starved");
                const int b = refresh_target();
                m_refpb_pending[static_cast<std::size_t>((m_refpb_head + m_refpb_count) % n)] = b;
                ++m_refpb_count;
                m_ref_next_bank = (b + 1) % m_banks;
            }
            m_ref_due += m_ref_interval;
            recompute_blocked();
            m_col_dirty = true;
            dirty_row();
        }

        // Column bus, then row bus.
        if (m_col_dirty) rescan_col();
        if (m_col.tick == t) {
            issue_cas(m_col.bank, t);
            freed = stop_when_slot_frees;
        }
        clean_row();
        if (refresh_tick() == t) {
            issue_refresh(t);
        } else if (m_rc[m_row].tick == t) {
            const int b = m_rc[m_row].bank;
            if (m_row == 0)  // the ACT class: a precharged bank
                issue_act(b, t);
            else
                issue_pre(b, t, true);
        }
        if (m_write_mode && !m_prev_mode) ++m_stats.write_drains;
        m_prev_mode = m_write_mode;
        m_now = t + 1;
        update_mode();
    }
    if (!freed) skip_to(until);
    account(m_now);
    m_stats.ticks = m_now;
    return freed;
}

}  // namespace trnsim::hw::dram
