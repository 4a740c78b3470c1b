#pragma once
// One HBM pseudo-channel: its banks (state machines with earliest-issue times per command) and its
// controller (read/write queues, FR-FCFS, write-drain watermarks, page policy, refresh), plus stats and
// the command counts an energy model multiplies by per-command energies. Plain C++; the SystemC/TLM
// wrapper converts times and drives run_until().
//
// What is modelled, per controller tick (the command timeline is exact):
// - Every constraint of TimingChecker (dram_timing.h) is held as earliest-issue times per bank, bank
//   group, SID and pseudo-channel, plus the last four ACTs (tFAW) and the row/column command buses.
// - At each tick t: requests with arrival <= t join their queue; the drain mode of tick t follows from
//   the mode of tick t-1 and the queues now (enter write mode when writes >= write_high, or no reads but
//   some writes; leave it when writes <= write_low and reads are waiting, or no writes are left);
//   refreshes falling due are queued (REFab every REFI; REFpb every REFIpb, each bank once per round of
//   `banks` REFpb, the target chosen when it falls due: the first bank in round-robin order that is idle
//   (no queued request in either queue) and precharged, else idle, else any bank left in the round); then
//   1. column bus: the oldest request of the served queue whose row is open and whose RD/WR may issue
//      at t (FR-FCFS: first ready, column first, oldest first); closed page issues RDA/WRA when no other
//      queued request (either queue) hits that row;
//   2. row bus: a due refresh first, once its next command may issue (all-bank: PREA if a bank is open,
//      then REFab; per-bank: PRE of the target bank if open, then REFpb); otherwise the oldest request of
//      the served queue whose next command may issue at t: ACT if its bank is precharged, PRE if another
//      row is open and no request of the served queue hits that row (row hits are served before a
//      conflict closes the row). A pending REFab holds every request command; a pending REFpb its bank.
//   With a single command bus both steps share one bus (one command per tick at most).
// - A request is a row hit, miss or conflict by the bank state when the first command for it issues.
// - Abstracted away: data values, power-down and self-refresh, refresh postponing beyond "as soon as the
//   banks allow", RFM, ECC, the PHY/TSV latency outside tCL.
// Ticks are not stepped one by one: the controller keeps the best candidate per bus (earliest legal tick,
// then oldest) and jumps from one decision tick to the next; tests check that the timeline equals a naive
// tick-by-tick controller's.

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "trnsim/hw/dram_timing.h"

namespace trnsim::hw::dram {

struct Request {
    std::uint64_t id;
    bool write;
    int sid, bank_group, bank, row, column;
    std::uint64_t arrival;  // controller tick at which the request is in the queue
};

// read: tick of the last data beat returned (RD + CL + BL); write: last beat written (WR + CWL + BL).
struct Completion {
    std::uint64_t id;
    std::uint64_t tick;
};

enum class PagePolicy { open, closed };  // closed: RDA/WRA when no other queued request hits the row
enum class RefreshMode { all_bank, per_bank, off };

struct ControllerSpec {
    int read_queue = 64, write_queue = 64;
    int write_high = 48, write_low = 16;  // write-drain watermarks (queued writes)
    PagePolicy page = PagePolicy::open;
    RefreshMode refresh = RefreshMode::all_bank;

    // Throws std::invalid_argument: queues >= 1, 0 <= write_low < write_high <= write_queue.
    void validate() const;
};

struct ChannelStats {
    std::uint64_t reads = 0, writes = 0;                            // requests served (RD/RDA, WR/WRA issued)
    std::uint64_t row_hits = 0, row_misses = 0, row_conflicts = 0;  // per request, at its first command
    std::uint64_t acts = 0;
    std::uint64_t pres = 0;             // PRE commands (requests and per-bank refresh)
    std::uint64_t preas = 0;            // PREA commands (all-bank refresh)
    std::uint64_t auto_pres = 0;        // RDA + WRA
    std::uint64_t bank_precharges = 0;  // banks closed by PRE, PREA or auto-precharge
    std::uint64_t refs_ab = 0, refs_pb = 0;
    std::uint64_t data_bus_busy_ticks = 0;  // BL per RD/WR
    std::uint64_t refresh_ticks = 0;        // ticks during which a bank or the channel is blocked by refresh
    std::uint64_t refresh_bank_ticks = 0;   // sum over banks of ticks blocked by refresh (RFC x banks, RFCpb)
    std::uint64_t active_ticks = 0;         // ticks with at least one bank open (until auto-precharge ends)
    std::uint64_t precharged_ticks = 0;     // ticks with every bank precharged
    std::uint64_t ticks = 0;                // ticks simulated (= the channel's current tick)
    std::uint64_t write_drains = 0;         // entries into write mode
    double latency_sum = 0;                 // ticks from arrival to completion, summed over served requests
    std::uint64_t latency_max = 0;
};

// The row-candidate scan of PseudoChannel (exposed for its test): over the banks set in `mask`, the least packed
// key (max(x[b], common) - now) << 40 | (age[b] - age_base), ~0 for an empty mask; x and age hold 64 entries.
// The keys are integers, so both versions give the same result; the AVX-512 one runs where the CPU has it (it is
// the scalar one on other targets).
std::uint64_t scan_class_scalar(std::uint64_t mask, std::uint64_t common, std::uint64_t now, std::uint64_t age_base,
                                const std::uint64_t* x, const std::uint64_t* age);
std::uint64_t scan_class_avx512(std::uint64_t mask, std::uint64_t common, std::uint64_t now, std::uint64_t age_base,
                                const std::uint64_t* x, const std::uint64_t* age);
bool scan_class_avx512_supported();

class PseudoChannel {
public:
    PseudoChannel(const Organization& org, const Timing& timing, const ControllerSpec& spec);

    bool can_accept(bool write) const {  // queue space (requests not yet served, arrived or not)
        const int q = write ? 1 : 0;
        return m_queued[q] + m_waiting[q] < (write ? m_spec.write_queue : m_spec.read_queue);
    }
    // r.arrival >= the current tick (an earlier arrival is taken as arriving now, its latency still
    // counted from r.arrival). Throws std::logic_error when the queue is full, std::out_of_range for a
    // field outside the organization.
    void enqueue(const Request& r);
    // Issues every command whose tick is < `until`; appends the requests completing before `until`, in
    // completion order. Afterwards the current tick is max(current, until).
    // With stop_when_slot_frees, stops instead after the first tick t < until at which a request left its
    // queue (its RD/WR issued): the current tick is then t + 1 and completions before t + 1 are appended.
    // Returns true if it stopped so. (A driver keeping the queues full refills at now(); this is
    // exactly per-event stepping, without a call per ACT/PRE.)
    bool run_until(std::uint64_t until, std::vector<Completion>& done, bool stop_when_slot_frees = false);
    // run_until(until, done) and then take_issued(done), in one pass over the completions.
    void run_until_taking_issued(std::uint64_t until, std::vector<Completion>& done);
    // Earliest tick at which the channel will do something (issue a command or complete a request), or
    // UINT64_MAX when idle with nothing queued and refresh off. Never in the past. Exact, except that a
    // request enqueued for a future arrival tick makes that tick an event.
    std::uint64_t next_event_tick() const;
    // Appends every request whose RD/WR has issued and that run_until has not returned yet, with its
    // completion tick (possibly >= now()), in completion order. A driver may report completions this early:
    // their ticks are final once the command has issued.
    void take_issued(std::vector<Completion>& done);
    // Earliest tick at which the controller may issue a command (or a refresh falls due or a request
    // arrives), ignoring completions; never in the past. No RD/WR issues before it.
    std::uint64_t next_command_tick() const { return next_decision_tick(); }
    // Fewest ticks from a RD/WR to its completion: min(CL, CWL) + BL.
    std::uint64_t min_completion_ticks() const { return static_cast<std::uint64_t>(std::min(m_rd_done, m_wr_done)); }
    void set_command_log(std::vector<IssuedCommand>* log) { m_log = log; }  // nullptr = off
    const ChannelStats& stats() const { return m_stats; }

    std::uint64_t now() const { return m_now; }               // every tick < now() has been simulated
    bool write_mode() const { return m_write_mode; }          // drain mode of tick now(), given the requests so far
    int queued(bool write) const { return m_queued[write]; }  // arrived, not yet served
    const Organization& organization() const { return m_org; }
    const Timing& timing() const { return m_t; }
    const ControllerSpec& spec() const { return m_spec; }

private:
    static constexpr std::uint64_t kNone = ~std::uint64_t{0};
    static constexpr std::size_t kMaxBanks = 64, kMaxSids = 8;

    // A request in a queue: one cache line. The age (seq), row and row group of the next request in its bank list
    // are copied in, and a row group keeps its head's age, so that serving a request or opening a row updates the
    // age keys and the bank's head without loading another request's line. (Its own age lives in the keys and in
    // its predecessors.)
    struct alignas(64) Slot {
        std::uint64_t id, arrival;
        std::uint64_t bank_next_seq, group_next_seq;  // seq of bank_next, group_next (when >= 0)
        int row;
        int bank_prev, bank_next;            // age-ordered list of the bank's requests in this queue
        int bank_next_row, bank_next_group;  // of bank_next (when >= 0)
        int group_next;                      // FIFO of the requests to the same (bank, row) in this queue
        std::uint8_t bank;
        bool write;
    };
    static_assert(sizeof(Slot) == 64, "a queued request is one cache line");
    struct Group {  // queued requests of one queue to one row of one bank
        std::uint64_t head_seq;
        int row, head, tail, count, prev, next;
    };
    struct BankQueue {  // one bank's requests in one queue
        int head = -1, tail = -1;
        // The head's row and row group (valid while head >= 0): an ACT opens the head's row, and the head is its
        // group's head, so an ACT loads neither the request's line nor the group's.
        int head_row = -1, head_group = -1;
        int groups = -1;      // list of row groups
        int open_group = -1;  // group of the open row, -1 if none
        // The open group's head (valid while open_group >= 0), so that a column command finds its request
        // without first loading the group's line.
        int open_head = -1;
        // Row groups per row bucket (row mod 8), four bits each, sticky at 15 until the queue has no group: a
        // request to a row of an empty bucket starts a group without walking the list (most random requests).
        std::uint32_t row_buckets = 0;
    };
    struct alignas(64) BankQueues {  // a bank's two queues (reads, writes) in one cache line
        BankQueue queue[2];
    };
    struct Best {  // best candidate of a bus: (earliest legal tick, age)
        std::uint64_t tick = kNone, seq = kNone;
        int bank = -1;
    };
    struct Done {
        std::uint64_t tick, order, id;
    };
    struct DoneQueue {  // completions in tick order (reads and writes each complete in issue order)
        std::vector<Done> items;
        std::size_t head = 0;
        bool empty() const { return head == items.size(); }
        const Done& front() const { return items[head]; }
        void pop();
    };

    BankQueue& bank_queue(int q, int b) { return m_bq[static_cast<std::size_t>(b)].queue[q]; }
    const BankQueue& bank_queue(int q, int b) const { return m_bq[static_cast<std::size_t>(b)].queue[q]; }
    int active_queue() const { return m_write_mode ? 1 : 0; }

    void admit(int slot);
    void admit_arrived(std::uint64_t t);  // requests waiting in m_future with arrival <= t, in order
    void update_mode();
    void skip_to(std::uint64_t t);  // advance m_now over ticks without events
    int find_group(const BankQueue& bq, int row) const;
    void open_bank(int b, int row, int known_group);  // known_group: the served queue's group of `row`
    void close_bank(int b);
    void update_act_x(int b);
    void update_bg_act_x(int b);  // every bank of b's bank group

    // Candidates.
    void clean() const;
    void clean_row() const;
    void rescan_col() const;
    std::uint64_t seq_base(int q) const;
    void rescan_row_class(int c) const;
    void revalidate_row_class(int c) const;
    void dirty_row() const { m_rc_dirty[0] = m_rc_dirty[1] = true; }
    std::uint64_t act_common() const;
    std::uint64_t pre_common() const;
    void consider_col(int b) const;
    void consider_row(int b) const;
    std::uint64_t col_tick(int q, int b) const;
    std::uint64_t row_tick(int b) const;
    std::uint64_t faw_ready() const { return m_act_count >= 4 ? m_faw[m_act_count & 3] + m_t.FAW : 0; }
    // Earliest tick of the pending refresh's next command, kNone if none.
    std::uint64_t refresh_tick() const { return (m_refab_pending | m_refpb_count) ? pending_refresh_tick() : kNone; }
    std::uint64_t pending_refresh_tick() const;
    void recompute_blocked();
    bool run_ticks(std::uint64_t until, bool stop_when_slot_frees);            // run_until without the completions
    void pop_completions(std::uint64_t until, std::vector<Completion>& done);  // ticks < until
    int refresh_target();  // the bank of a REFpb falling due now (see the class comment)

    // Issue.
    void issue_cas(int b, std::uint64_t t);
    void issue_act(int b, std::uint64_t t);
    void issue_pre(int b, std::uint64_t t, bool for_request);
    void issue_prea(std::uint64_t t);
    void issue_refab(std::uint64_t t);
    void issue_refpb(int b, std::uint64_t t);
    void issue_refresh(std::uint64_t t);
    void row_bus_used(std::uint64_t t, int occupancy);
    void account(std::uint64_t t);  // active/precharged ticks up to t
    void add_refresh_ticks(std::uint64_t t, std::uint64_t duration);
    void log(std::uint64_t t, Command c, int b, int row);

    Organization m_org;
    Timing m_t;
    ControllerSpec m_spec;
    int m_banks;
    std::uint64_t m_bank_mask;
    int m_wr_to_pre, m_rd_done, m_wr_done;
    // Per bank: SID, flat bank group (sid * bank_groups + bg). The per-bank, per-group and per-SID state is
    // held in fixed arrays inside the object (at most 64 banks and 8 SIDs, Organization::validate): no
    // indirection through a heap pointer on every access.
    std::array<std::uint8_t, kMaxBanks> m_sid_of{}, m_bg_of{};
    std::array<int, kMaxBanks> m_open_row{};  // -1: precharged

    // Earliest-issue times (ticks) per scope and command kind.
    std::array<std::uint64_t, kMaxBanks> m_bank_act{}, m_bank_pre{}, m_bank_rd{}, m_bank_wr{};
    std::array<std::uint64_t, kMaxBanks> m_bg_act{}, m_bg_rd{}, m_bg_wr{};
    std::array<std::uint64_t, kMaxSids> m_sid_rd{}, m_sid_wr{};
    std::uint64_t m_pc_act = 0, m_pc_pre = 0, m_pc_prea = 0, m_pc_rd = 0, m_pc_wr = 0, m_pc_refab = 0, m_pc_refpb = 0;
    std::uint64_t m_faw[4] = {0, 0, 0, 0};
    std::uint64_t m_act_count = 0;
    std::uint64_t m_row_bus = 0, m_col_bus = 0;  // free from
    int m_open_banks = 0;
    std::uint64_t m_closed = 0;  // mask of precharged banks

    // Queues.
    std::vector<Slot> m_slots;
    int m_free_slot = -1;
    std::vector<Group> m_groups;
    int m_free_group = -1;
    std::vector<BankQueues> m_bq;                  // [bank]
    int m_queued[2] = {0, 0};                      // arrived, not served
    mutable std::uint64_t m_seq_base[2] = {0, 0};  // seq_base()
    int m_waiting[2] = {0, 0};                     // enqueued for a future arrival
    std::uint64_t m_req_mask[2] = {0, 0};          // banks with requests in the queue
    std::uint64_t m_cas_mask[2] = {0, 0};          // banks whose open row has requests in the queue
    std::vector<int> m_future;                     // slots waiting for their arrival tick, in arrival order
    std::size_t m_future_head = 0;
    // Banks whose head request is a row hit, miss or conflict already (by the first ACT or PRE for it). Only a
    // head is ever classified (ACT and PRE serve the head), so a bit per bank will do and a PRE loads neither the
    // request nor the bank queue; a request served as a row hit without being the head was never classified.
    std::uint64_t m_classified[2] = {0, 0};
    std::uint64_t m_seq = 0;
    bool m_write_mode = false;  // drain mode of tick m_now (from m_prev_mode and the queues as they are now)
    bool m_prev_mode = false;   // drain mode of tick m_now - 1

    // Refresh.
    std::uint64_t m_ref_due = kNone;
    std::uint64_t m_ref_interval = 0;
    int m_refab_pending = 0;
    std::vector<int> m_refpb_pending;  // ring of target banks
    int m_refpb_head = 0, m_refpb_count = 0, m_ref_next_bank = 0;
    std::uint64_t m_ref_round = 0;  // banks given a REFpb target in the current round
    std::uint64_t m_blocked = 0;    // banks held by a pending refresh

    // Best candidates, kept between decisions: the column bus; the row bus per class (0: ACT to a precharged
    // bank, 1: PRE of an open bank) and overall. A class stays valid while its best tick is not below the
    // class's common terms (row bus, tRRD/tFAW or tPPD): banks entering it are merged, anything else rescans.
    // m_row is the class of the row bus's best: an index, not a copy (a 16-byte copy of a Best just written
    // field by field stalls on store forwarding).
    mutable Best m_col, m_rc[2];
    mutable int m_row = 0;
    mutable bool m_col_dirty = true, m_rc_dirty[2] = {true, true};
    // The next decision tick, once computed and until a request arrives or a tick is processed.
    mutable std::uint64_t m_next_tick = 0;
    mutable bool m_next_valid = false;
    std::uint64_t next_decision_tick() const;

    DoneQueue m_done[2];
    std::uint64_t m_cas_order = 0;
    std::vector<Completion>* m_issued = nullptr;  // during run_until_taking_issued: completions go here directly
    int m_issued_kinds = 0;                       // and which were issued there: bit 0 reads, bit 1 writes

    std::uint64_t m_now = 0;
    std::uint64_t m_accounted = 0, m_auto_close = 0, m_refresh_until = 0;
    ChannelStats m_stats;
    std::vector<IssuedCommand>* m_log = nullptr;

    // Dense copies for the candidate scans (last: the scalars above share fewer cache lines): per bank max(bank ACT,
    // bank-group ACT) earliest tick; per queue and bank the age key (seq << 6 | bank) of the oldest request and of
    // the oldest request to the open row (kNone if none).
    std::uint64_t m_act_x[64] = {};
    std::uint64_t m_head_key[2][64];
    std::uint64_t m_hit_key[2][64];
};

}  // namespace trnsim::hw::dram
