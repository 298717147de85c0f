#pragma once

#define CURVKIT_VERSION_MAJOR 0
#define CURVKIT_VERSION_MINOR 1
#define CURVKIT_VERSION_PATCH 0

namespace curvkit {
/// "0.1.0"
const char* version();
}  // namespace curvkit
