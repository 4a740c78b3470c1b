// The wake-up queue's radix heap (hw/radix_queue.h): entries leave by due time, then request order, as a
// plain priority queue orders them, whatever the mix of pushes and takes, as long as nothing is pushed
// due before the current time. And the links' and DMA rings' rotations (hw/ring_queue.h), against a deque.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <queue>
#include <random>
#include <tuple>
#include <vector>

#include "trnsim/hw/radix_queue.h"
#include "trnsim/hw/ring_queue.h"
#include "trnsim/hw/wakeup.h"

using namespace trnsim;

namespace {

struct Item {
    std::uint64_t due = 0, seq = 0;
};

}  // namespace

TEST_CASE("the radix queue gives entries by due time, then request order, like a priority queue", "[wakeup]") {
    std::mt19937_64 rng(7);
    hw::RadixQueue<Item> radix;
    auto later = [](const Item& a, const Item& b) { return std::tie(a.due, a.seq) > std::tie(b.due, b.seq); };
    std::priority_queue<Item, std::vector<Item>, decltype(later)> reference(later);
    std::uint64_t now = 0, seq = 0, taken = 0;
    for (int step = 0; step < 200000; ++step) {
        // Push a few entries due from now on: often at now itself (ties), near, or far (high buckets).
        const int pushes = static_cast<int>(rng() % 4);
        for (int k = 0; k < pushes; ++k) {
            const std::uint64_t kind = rng() % 4;
            const std::uint64_t delay = kind == 0   ? 0
                                        : kind == 1 ? rng() % 16
                                        : kind == 2 ? rng() % 100000
                                                    : rng() >> 20;
            const Item e{now + delay, seq++};
            radix.push(e);
            reference.push(e);
        }
        // Advance time to the next due entry (sometimes a bit short of it) and take what is due.
        if (reference.empty()) continue;
        REQUIRE(radix.earliest() == reference.top().due);
        now = reference.top().due - (rng() % 8 == 0 && reference.top().due > now ? 1 : 0);
        Item got;
        while (radix.take(now, got)) {
            REQUIRE_FALSE(reference.empty());
            const Item want = reference.top();
            reference.pop();
            REQUIRE(got.due == want.due);
            REQUIRE(got.seq == want.seq);
            ++taken;
        }
        CHECK((reference.empty() || reference.top().due > now));
    }
    CHECK(taken > 100000);
}

TEST_CASE("the radix queue refuses an entry due before the last one taken", "[wakeup]") {
    hw::RadixQueue<Item> q;
    q.push({100, 0});
    q.push({200, 1});
    Item got;
    REQUIRE(q.take(150, got));
    CHECK(got.due == 100);
    CHECK_FALSE(q.take(150, got));  // 200 is not due by 150, and the last time stays at 100
    q.push({120, 2});               // due after the last taken: fine
    CHECK(q.earliest() == 120);
    CHECK_THROWS_AS(q.push({99, 3}), std::logic_error);
}

TEST_CASE("the ring queue keeps first-in first-out order through growth and erasure, like a deque", "[wakeup]") {
    std::mt19937_64 rng(11);
    hw::RingQueue<int> ring;
    std::deque<int> reference;
    int next = 0;
    for (int step = 0; step < 100000; ++step) {
        const auto op = rng() % 8;
        if (op < 4 || reference.empty()) {  // push (the queue grows through 8, 16, 32, ... entries)
            ring.push_back(next);
            reference.push_back(next++);
        } else if (op < 7) {
            REQUIRE(ring.front() == reference.front());
            ring.pop_front();
            reference.pop_front();
        } else {  // erase one from anywhere
            const std::size_t i = rng() % reference.size();
            ring.erase(i);
            reference.erase(reference.begin() + static_cast<std::ptrdiff_t>(i));
        }
        REQUIRE(ring.size() == reference.size());
        REQUIRE(ring.empty() == reference.empty());
        if (!reference.empty()) REQUIRE(ring[reference.size() - 1] == reference.back());
    }
    for (std::size_t i = 0; i < reference.size(); ++i) REQUIRE(ring[i] == reference[i]);
}

TEST_CASE("a wait past the simulated clock's range (2^64 fs) is found before the time wraps", "[wakeup]") {
    constexpr std::uint64_t max = ~std::uint64_t{0};
    CHECK_FALSE(trnsim::hw::past_clock(max - 10, 9));
    CHECK(trnsim::hw::past_clock(max - 10, 10));  // 2^64 - 1 itself stands for "never"
    CHECK(trnsim::hw::past_clock(1, max));
    CHECK_FALSE(trnsim::hw::past_clock(0, 1'000'000'000'000'000'000));  // 1000 s
    CHECK_THAT(trnsim::hw::past_clock_message(), Catch::Contains("2^64 fs") && Catch::Contains("18447 s"));
}
