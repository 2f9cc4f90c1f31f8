#pragma once
// The web page at / (HTML, JS and CSS from src/serve/web/, compiled into the binary by CMake; no CDN, no network).
#include <string>
#include <vector>

namespace m2sa::serve {

struct WebAsset {
  const char* path;          // "/", "/app.js", "/style.css"
  const char* content_type;  // "text/html; charset=utf-8", ...
  std::string body;
};

// Every asset; nullptr-free, fixed order.
const std::vector<WebAsset>& web_assets();

}  // namespace m2sa::serve
