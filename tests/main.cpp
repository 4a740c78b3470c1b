#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "trnsim/core/sim_context.h"

// libsystemc's main() calls sc_main(): run Catch from there.
extern "C" int sc_main(int argc, char** argv) {
    trnsim::init_systemc();
    return Catch::Session().run(argc, argv);
}

// catch_discover_tests reads the names into a CMake list: a name with a semicolon becomes two CTest tests,
// each matching no test case, both passing without running anything.
TEST_CASE("no test name holds a semicolon, which would make CTest run two empty tests instead of it", "[tests]") {
    const auto& tests = Catch::getRegistryHub().getTestCaseRegistry().getAllTests();
    CHECK(tests.size() > 200);
    for (const auto& t : tests) {
        INFO(t.name);
        CHECK(t.name.find(';') == std::string::npos);
    }
}
