#include "trnsim/runtime/mem_runner.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <tlm_utils/simple_initiator_socket.h>

#include "trnsim/core/error.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/dram_address.h"
#include "trnsim/hw/hbm_memory.h"
#include "trnsim/hw/hbm_spec.h"
#include "trnsim/hw/i_memory.h"

namespace trnsim::runtime {

MemResult run_mem(const MemOptions& o, const Config& config) {
    if (o.requests == 0) throw UserError("--requests 0: allowed at least 1");
    if (!(o.read_ratio >= 0 && o.read_ratio <= 1))  // NaN too
        throw UserError(fmt::format("--read-ratio {}: allowed 0..1", o.read_ratio));
    if (o.outstanding == 0) throw UserError("--outstanding 0: allowed at least 1");
    if (o.pattern != "stream" && o.pattern != "random" && o.pattern != "strided") {
        throw UserError(fmt::format("--pattern {}: allowed stream, random, strided", o.pattern));
    }
    const std::string model = config.get_text("chip.memory.model");
    const auto granularity =
        model == "hbm" ? static_cast<std::uint64_t>(config.get_int("chip.memory.hbm.burst_bytes")) : 1;
    if (o.request_bytes == 0 || o.request_bytes % granularity != 0) {
        throw UserError(
            fmt::format("--request-bytes {}: allowed a positive multiple of the access granularity, {} B "
                        "(chip.memory.hbm.burst_bytes)",
                        o.request_bytes, granularity));
    }
    if (o.pattern == "strided" && (o.stride == 0 || o.stride % granularity != 0)) {
        throw UserError(fmt::format("--stride {}: allowed a positive multiple of {} B", o.stride, granularity));
    }

    init_systemc();
    auto memory = hw::make_memory(model, "memory", config, hw::MemoryContext{1, true});
    std::uint64_t capacity = config.get_bytes("chip.memory.capacity").count;
    if (model == "hbm") {
        const auto spec = hw::HbmSpec::from_config(config, static_cast<int>(config.get_int("chip.memory.stacks")));
        capacity = hw::dram::AddressMap(spec.org, spec.stacks, spec.map).capacity_bytes();
    }
    const std::uint64_t slots = std::max<std::uint64_t>(1, capacity / o.request_bytes);
    const std::uint64_t span = slots * o.request_bytes;  // addresses wrap here

    enum class Pattern { stream, random, strided };
    const Pattern pattern = o.pattern == "stream"   ? Pattern::stream
                            : o.pattern == "random" ? Pattern::random
                                                    : Pattern::strided;
    std::vector<std::uint64_t> arrival_fs(o.requests, 0);
    std::vector<std::uint8_t> is_write(o.requests, 0);
    std::uint64_t first_issue = UINT64_MAX;

    // Completions, as the memory reports them (possibly ahead of time: a request counts as in flight until
    // its data arrive).
    struct Tracker {
        std::vector<std::uint64_t> done_fs;
        std::uint64_t last_done = 0, completed = 0, in_flight = 0;
        // Done times not yet passed, ascending. Memories report in nearly ascending order (a queued memory by
        // completion tick per channel), so an insertion walks back a few entries at most.
        std::deque<std::uint64_t> retire;
        // Done times reported since, in report order: sorted into `retire` only when the generator has to
        // count the requests retired by now (which it need not while in_flight, an upper bound until then,
        // stays below `outstanding`), or in batches.
        std::vector<std::uint64_t> reported;
        sc_core::sc_event slot_free;
        std::uint64_t wake_at = UINT64_MAX;  // the generator waits for a retirement until then; MAX: not waiting
        void complete(std::uint64_t i, std::uint64_t done) {
            done_fs[i] = done;
            last_done = std::max(last_done, done);
            ++completed;
            reported.push_back(done);
            if (done < wake_at) {  // earlier than what the generator waits for
                wake_at = done;
                slot_free.notify(sc_core::SC_ZERO_TIME);
            }
        }
        // Retires every request done by `now`.
        void retire_until(std::uint64_t now) {
            while (!retire.empty() && retire.front() <= now) {
                retire.pop_front();
                --in_flight;
            }
            for (const std::uint64_t done : reported) {
                if (done <= now) {
                    --in_flight;
                    continue;
                }
                auto at = retire.end();
                while (at != retire.begin() && *(at - 1) > done) --at;
                retire.insert(at, done);
            }
            reported.clear();
        }
    } tracker;
    tracker.done_fs.assign(o.requests, 0);

    struct Generator : sc_core::sc_module {
        tlm_utils::simple_initiator_socket<Generator> port;
        explicit Generator(const sc_core::sc_module_name& n) : sc_core::sc_module(n), port("port") {}
    } generator("generator");
    generator.port.bind(memory->socket);
    // One generator process sends every request, one at a time.
    auto* const hbm = dynamic_cast<hw::HbmMemory*>(memory.get());
    if (hbm) {
        hbm->set_single_sender(o.single_sender);
        hbm->set_done_sink(
            [](void* ctx, std::uint64_t i, std::uint64_t done) { static_cast<Tracker*>(ctx)->complete(i, done); },
            &tracker);
    }

    sc_core::sc_spawn([&] {
        std::mt19937_64 rng(o.seed);
        std::uniform_real_distribution<double> coin(0.0, 1.0);
        std::uniform_int_distribution<std::uint64_t> slot(0, slots - 1);
        tlm::tlm_generic_payload trans;
        auto* timing = new hw::MemoryTiming;  // owned by the payload
        trans.set_extension(timing);
        std::uint64_t address = 0;
        Tracker* const t = &tracker;
        for (std::uint64_t i = 0; i < o.requests; ++i) {
            for (;;) {
                // Retiring only lowers in_flight: below the limit it can wait (for a batch of reports).
                if (t->in_flight < o.outstanding && t->reported.size() < 4096) break;
                const std::uint64_t now = sc_core::sc_time_stamp().value();
                t->retire_until(now);
                if (t->in_flight < o.outstanding) break;
                t->wake_at = t->retire.empty() ? UINT64_MAX - 1 : t->retire.front();
                if (t->retire.empty())
                    sc_core::wait(t->slot_free);
                else
                    sc_core::wait(sc_core::sc_time::from_value(t->retire.front() - now), t->slot_free);
                t->wake_at = UINT64_MAX;
            }
            if (pattern == Pattern::random) address = slot(rng) * o.request_bytes;
            const bool write = o.read_ratio < 1.0 && coin(rng) >= o.read_ratio;
            is_write[i] = write;
            trans.set_command(write ? tlm::TLM_WRITE_COMMAND : tlm::TLM_READ_COMMAND);
            trans.set_address(address < span ? address : address % span);
            trans.set_data_ptr(nullptr);
            trans.set_data_length(static_cast<unsigned int>(o.request_bytes));
            trans.set_streaming_width(static_cast<unsigned int>(o.request_bytes));
            if (i == 0) first_issue = sc_core::sc_time_stamp().value();  // time only advances
            ++t->in_flight;
            // Latency runs from the request's arrival at the controller (set by the memory) to its data.
            // The HBM model is called directly (the socket's forwarding, two indirect calls, cost ~2% of a random
            // run) and reports to the tracker through its sink (building, moving and destroying a std::function
            // per request cost ~2%): the same request, the same completion.
            if (hbm) {
                hbm->send(trans, i);
            } else {
                timing->on_done = [t, i](std::uint64_t done) { t->complete(i, done); };
                sc_core::sc_time delay = sc_core::SC_ZERO_TIME;
                generator.port->b_transport(trans, delay);
            }
            arrival_fs[i] = timing->arrival_fs;
            if (timing->accept_delay > sc_core::SC_ZERO_TIME) sc_core::wait(timing->accept_delay);
            if (pattern == Pattern::stream) address += o.request_bytes;
            if (pattern == Pattern::strided) address += o.stride;
        }
    });

    const auto wall_start = std::chrono::steady_clock::now();
    run_simulation();
    memory->finish(sc_core::sc_time_stamp().value());
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    if (tracker.completed != o.requests) {
        throw std::logic_error(fmt::format("mem: {} of {} requests completed", tracker.completed, o.requests));
    }

    MemResult r;
    r.part = model == "hbm" ? config.get_text("chip.memory.hbm.part") : "ideal";
    r.memory_model = model;
    r.stacks = static_cast<int>(config.get_int("chip.memory.stacks"));
    r.pattern = o.pattern;
    r.requests = o.requests;
    r.request_bytes = o.request_bytes;
    r.read_ratio = o.read_ratio;
    r.outstanding = o.outstanding;
    r.time_s = static_cast<double>(tracker.last_done - first_issue) * 1e-15;
    r.bandwidth_gbps = static_cast<double>(o.requests * o.request_bytes) / r.time_s * 1e-9;
    r.peak_gbps = memory->peak_bytes_per_s() * 1e-9;
    // Latency statistics over every request, and over reads alone (writes complete when their data are
    // written: WR + CWL + BL).
    auto stats_of = [](std::vector<double> v) {
        LatencyStats st;
        st.count = v.size();
        if (v.empty()) return st;
        double sum = 0;
        for (double x : v) sum += x;
        st.mean = sum / static_cast<double>(v.size());
        auto quantile = [&](double q) {
            const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
            std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
            return v[k];
        };
        st.p50 = quantile(0.5);
        st.p99 = quantile(0.99);
        st.max = *std::max_element(v.begin(), v.end());
        return st;
    };
    std::vector<double> all_ns(o.requests), read_ns;
    read_ns.reserve(o.requests);
    for (std::size_t i = 0; i < all_ns.size(); ++i) {
        all_ns[i] = static_cast<double>(tracker.done_fs[i] - arrival_fs[i]) * 1e-6;
        if (!is_write[i]) read_ns.push_back(all_ns[i]);
    }
    r.latency = stats_of(std::move(all_ns));
    r.read_latency = stats_of(std::move(read_ns));
    r.summary = memory->summary();
    if (r.summary.count("timing_violations") && r.summary.at("timing_violations") > 0) {
        throw std::logic_error("HBM timing checker found violations (chip.memory.hbm.check_timing)");
    }
    r.wall_s = wall;
    r.config = config.values();
    return r;
}

}  // namespace trnsim::runtime
