#pragma once
// A small well-formedness check of XML (the JUnit reports of trnsim compare): balanced, properly nested tags,
// quoted attributes, escaped text. Not a validator: enough to catch a report a CI system would reject.

#include <string>

namespace trnsim::testing {

// True when `xml` is well formed; otherwise false, with the first problem in `why`.
bool well_formed_xml(const std::string& xml, std::string& why);

}  // namespace trnsim::testing
