#include "m2sa/io/pickle.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "m2sa/core/error.h"

namespace m2sa {

// ---- PyValue ----

namespace {

// Containers are freed through this deleter so that freeing a deeply nested value takes constant stack: a
// container whose last reference goes while another one is being freed is queued, not freed inside its
// parent's destructor (which would recurse once per level and overflow the stack on a deep value).
class PickleFreeQueue {
 public:
  template <typename T>
  static void free(T* p) {
    PickleFreeQueue& q = instance();
    q.pending_.push_back(Item{p});
    if (q.draining_) return;
    q.draining_ = true;
    while (!q.pending_.empty()) {
      Item item = q.pending_.back();
      q.pending_.pop_back();
      delete item.list;  // may queue the containers it held
      delete item.dict;
    }
    q.draining_ = false;
  }

 private:
  struct Item {
    Item(PyValue::List* l) : list(l) {}
    Item(PyValue::Dict* d) : dict(d) {}
    PyValue::List* list = nullptr;
    PyValue::Dict* dict = nullptr;
  };
  static PickleFreeQueue& instance() {
    thread_local PickleFreeQueue q;
    return q;
  }
  bool draining_ = false;
  std::vector<Item> pending_;
};

std::shared_ptr<PyValue::List> new_pickle_list(PyValue::List items) {
  return std::shared_ptr<PyValue::List>(new PyValue::List(std::move(items)),
                                        [](PyValue::List* p) { PickleFreeQueue::free(p); });
}

}  // namespace

PyValue PyValue::boolean(bool b) {
  PyValue v;
  v.kind_ = Kind::Bool;
  v.int_ = b;
  return v;
}
PyValue PyValue::integer(int64_t i) {
  PyValue v;
  v.kind_ = Kind::Int;
  v.int_ = i;
  return v;
}
PyValue PyValue::floating(double f) {
  PyValue v;
  v.kind_ = Kind::Float;
  v.float_ = f;
  return v;
}
PyValue PyValue::str(std::string s) {
  PyValue v;
  v.kind_ = Kind::Str;
  v.text_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
PyValue PyValue::bytes(std::string s) {
  PyValue v;
  v.kind_ = Kind::Bytes;
  v.text_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
PyValue PyValue::list(List items) {
  PyValue v;
  v.kind_ = Kind::List;
  v.list_ = new_pickle_list(std::move(items));
  return v;
}
PyValue PyValue::tuple(List items) {
  PyValue v = list(std::move(items));
  v.kind_ = Kind::Tuple;
  return v;
}
PyValue PyValue::dict() {
  PyValue v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::shared_ptr<Dict>(new Dict(), [](Dict* p) { PickleFreeQueue::free(p); });
  return v;
}
PyValue PyValue::set() {
  PyValue v = list();
  v.kind_ = Kind::Set;
  return v;
}
PyValue PyValue::global(std::string qualified_name) {
  PyValue v;
  v.kind_ = Kind::Global;
  v.text_ = std::make_shared<const std::string>(std::move(qualified_name));
  return v;
}
PyValue PyValue::tensor(at::Tensor t) {
  PyValue v;
  v.kind_ = Kind::Tensor;
  v.tensor_ = std::move(t);
  return v;
}
PyValue PyValue::opaque(std::string tag, int64_t id) {
  PyValue v;
  v.kind_ = Kind::Opaque;
  v.text_ = std::make_shared<const std::string>(std::move(tag));
  v.int_ = id;
  return v;
}

const char* PyValue::kind_name() const {
  switch (kind_) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Set: return "set";
    case Kind::Global: return "global";
    case Kind::Tensor: return "tensor";
    case Kind::Opaque: return "object";
  }
  return "?";
}

bool PyValue::as_bool() const {
  if (kind_ == Kind::Bool || kind_ == Kind::Int) return int_ != 0;
  fail("expected a bool, got ", kind_name());
}
int64_t PyValue::as_int() const {
  if (kind_ == Kind::Int || kind_ == Kind::Bool) return int_;
  fail("expected an int, got ", kind_name());
}
double PyValue::as_float() const {
  if (kind_ == Kind::Float) return float_;
  if (kind_ == Kind::Int) return static_cast<double>(int_);
  fail("expected a float, got ", kind_name());
}
const std::string& PyValue::as_str() const {
  if (kind_ == Kind::Str || kind_ == Kind::Bytes) return text();
  fail("expected a str, got ", kind_name());
}
const PyValue::List& PyValue::items() const { return mutable_items(); }
PyValue::List& PyValue::mutable_items() const {
  if (kind_ == Kind::List || kind_ == Kind::Tuple || kind_ == Kind::Set) return *list_;
  fail("expected a list or tuple, got ", kind_name());
}
const PyValue::Dict& PyValue::dict_items() const { return mutable_dict_items(); }
PyValue::Dict& PyValue::mutable_dict_items() const {
  if (kind_ == Kind::Dict) return *dict_;
  fail("expected a dict, got ", kind_name());
}
const std::string& PyValue::global_name() const {
  if (kind_ == Kind::Global) return text();
  fail("expected a global, got ", kind_name());
}
const at::Tensor& PyValue::as_tensor() const {
  if (kind_ == Kind::Tensor) return tensor_;
  fail("expected a tensor, got ", kind_name());
}
const PyValue* PyValue::find(std::string_view key) const {
  for (const auto& [k, v] : dict_items())
    if (k.is_str() && k.text() == key) return &v;
  return nullptr;
}
const std::string& PyValue::text() const {
  static const std::string empty;
  return text_ ? *text_ : empty;
}
const void* PyValue::container_id() const {
  if (list_) return list_.get();
  return dict_.get();
}
const PyValue& PyValue::at(std::string_view key) const {
  const PyValue* v = find(key);
  if (!v) fail("missing key '", key, "'");
  return *v;
}

// ---- unpickler ----

namespace {

class Unpickler {
 public:
  Unpickler(std::string_view data, const PickleHooks& hooks, const std::string& source)
      : data_(data), hooks_(hooks), source_(source) {}
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;
  // A refused pickle may have left containers that hold each other (a cycle of shared pointers never frees
  // itself): empty them all while every one is still held here.
  ~Unpickler() {
    if (accepted_) return;
    for (PyValue& c : containers_) {
      if (c.kind() == PyValue::Kind::Dict) c.mutable_dict_items().clear();
      else c.mutable_items().clear();
    }
  }

  PyValue run() {
    while (true) {
      const std::size_t op_pos = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;  // PROTO
        case 0x95: take(8); break;  // FRAME: framing is only a hint
        case '.': {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) bad(op_pos, "STOP with ", stack_.size(), " values on the stack");
          check_shape();
          accepted_ = true;
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 'N': push(PyValue::none()); break;
        case 0x88: push(PyValue::boolean(true)); break;
        case 0x89: push(PyValue::boolean(false)); break;
        case 'I': {
          std::string line = readline();
          if (line == "00") push(PyValue::boolean(false));
          else if (line == "01") push(PyValue::boolean(true));
          else push(PyValue::integer(parse_int(line, op_pos)));
          break;
        }
        case 'L': {
          std::string line = readline();
          if (!line.empty() && line.back() == 'L') line.pop_back();
          push(PyValue::integer(parse_int(line, op_pos)));
          break;
        }
        case 'J': push(PyValue::integer(static_cast<int32_t>(le(4)))); break;
        case 'K': push(PyValue::integer(u8())); break;
        case 'M': push(PyValue::integer(static_cast<int64_t>(le(2)))); break;
        case 0x8a: push(PyValue::integer(long_bytes(u8(), op_pos))); break;
        case 0x8b: push(PyValue::integer(long_bytes(le(4), op_pos))); break;
        case 'F': {
          std::string line = readline();
          char* end = nullptr;
          double d = std::strtod(line.c_str(), &end);
          if (end == line.c_str()) bad(op_pos, "bad FLOAT '", line, "'");
          push(PyValue::floating(d));
          break;
        }
        case 'G': {
          uint64_t bits = 0;
          for (uint8_t c : take(8)) bits = (bits << 8) | c;  // big-endian
          double d;
          std::memcpy(&d, &bits, 8);
          push(PyValue::floating(d));
          break;
        }
        case 'S': push(PyValue::bytes(unquote(readline(), op_pos))); break;
        case 'T': push(PyValue::bytes(std::string(take(le(4))))); break;
        case 'U': push(PyValue::bytes(std::string(take(u8())))); break;
        case 'B': push(PyValue::bytes(std::string(take(le(4))))); break;
        case 'C': push(PyValue::bytes(std::string(take(u8())))); break;
        case 0x8e: push(PyValue::bytes(std::string(take(le(8))))); break;
        case 0x96: push(PyValue::bytes(std::string(take(le(8))))); break;  // BYTEARRAY8
        case 'V': push(PyValue::str(raw_unicode_escape(readline(), op_pos))); break;
        case 'X': push(PyValue::str(std::string(take(le(4))))); break;
        case 0x8c: push(PyValue::str(std::string(take(u8())))); break;
        case 0x8d: push(PyValue::str(std::string(take(le(8))))); break;
        case ']': push(PyValue::list()); break;
        case ')': push(PyValue::tuple()); break;
        case '}': push(PyValue::dict()); break;
        case 0x8f: push(PyValue::set()); break;
        case 'l': push(PyValue::list(pop_mark())); break;
        case 't': push(PyValue::tuple(pop_mark())); break;
        case 0x91: {
          PyValue s = PyValue::set();
          s.mutable_items() = pop_mark();
          push(s);
          break;
        }
        case 0x85: push(PyValue::tuple(pop_n(1))); break;
        case 0x86: push(PyValue::tuple(pop_n(2))); break;
        case 0x87: push(PyValue::tuple(pop_n(3))); break;
        case 'd': {
          PyValue::List items = pop_mark();
          if (items.size() % 2) bad(op_pos, "DICT with an odd number of items");
          PyValue d = PyValue::dict();
          for (std::size_t i = 0; i < items.size(); i += 2) d.mutable_dict_items().emplace_back(items[i], items[i + 1]);
          push(d);
          break;
        }
        case 'a': {
          PyValue v = pop();
          append_to(top(), {v}, op_pos);
          break;
        }
        case 'e': {
          PyValue::List items = pop_mark();
          append_to(top(), items, op_pos);
          break;
        }
        case 0x90: {  // ADDITEMS
          PyValue::List items = pop_mark();
          append_to(top(), items, op_pos);
          break;
        }
        case 's': {
          PyValue v = pop();
          PyValue k = pop();
          set_items(top(), {k, v}, op_pos);
          break;
        }
        case 'u': {
          PyValue::List items = pop_mark();
          if (items.size() % 2) bad(op_pos, "SETITEMS with an odd number of items");
          set_items(top(), items, op_pos);
          break;
        }
        case 'p': memo_[parse_int(readline(), op_pos)] = top(); break;
        case 'q': memo_[u8()] = top(); break;
        case 'r': memo_[static_cast<int64_t>(le(4))] = top(); break;
        case 0x94: memo_[static_cast<int64_t>(memo_.size())] = top(); break;
        case 'g': push(memo_get(parse_int(readline(), op_pos), op_pos)); break;
        case 'h': push(memo_get(u8(), op_pos)); break;
        case 'j': push(memo_get(static_cast<int64_t>(le(4)), op_pos)); break;
        case 'c': {
          std::string module = readline();
          std::string name = readline();
          push(make_global(module + "." + name, op_pos));
          break;
        }
        case 0x93: {
          PyValue name = pop();
          PyValue module = pop();
          if (!name.is_str() || !module.is_str()) bad(op_pos, "STACK_GLOBAL needs two strings");
          push(make_global(module.as_str() + "." + name.as_str(), op_pos));
          break;
        }
        case 'R': {
          PyValue args = pop();
          PyValue callable = pop();
          if (callable.kind() != PyValue::Kind::Global) bad(op_pos, "REDUCE of a non-global ", callable.kind_name());
          if (!hooks_.reduce) bad(op_pos, "REDUCE of ", callable.global_name(), " is not supported here");
          push(call_hook([&] { return hooks_.reduce(callable.global_name(), args); }, op_pos));
          break;
        }
        case 'b': {
          PyValue state = pop();
          PyValue obj = pop();
          if (!hooks_.build) bad(op_pos, "BUILD (object state) is not supported here");
          push(call_hook([&] { return hooks_.build(obj, state); }, op_pos));
          break;
        }
        case 'Q': {
          PyValue pid = pop();
          if (!hooks_.persistent_load) bad(op_pos, "persistent ids are not supported here");
          push(call_hook([&] { return hooks_.persistent_load(pid); }, op_pos));
          break;
        }
        case 'P': {
          PyValue pid = PyValue::str(readline());
          if (!hooks_.persistent_load) bad(op_pos, "persistent ids are not supported here");
          push(call_hook([&] { return hooks_.persistent_load(pid); }, op_pos));
          break;
        }
        case 'i': bad(op_pos, "INST (arbitrary object construction) is refused");
        case 'o': bad(op_pos, "OBJ (arbitrary object construction) is refused");
        case 0x81: bad(op_pos, "NEWOBJ (arbitrary object construction) is refused");
        case 0x92: bad(op_pos, "NEWOBJ_EX (arbitrary object construction) is refused");
        case 0x82: case 0x83: case 0x84: bad(op_pos, "EXT (extension registry) is refused");
        case 0x97: case 0x98: bad(op_pos, "out-of-band buffers are not supported");
        default: bad(op_pos, "unknown pickle opcode 0x", hex(op));
      }
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(std::size_t pos, Args&&... args) const {
    fail(source_, ": pickle at byte ", pos, ": ", std::forward<Args>(args)...);
  }
  static std::string hex(uint8_t v) {
    const char* d = "0123456789abcdef";
    return {d[v >> 4], d[v & 15]};
  }

  std::string_view take(uint64_t n) {
    if (n > data_.size() - pos_) fail(source_, ": pickle truncated at byte ", pos_, " (needs ", n, " more bytes)");
    std::string_view s = data_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  uint8_t u8() { return static_cast<uint8_t>(take(1)[0]); }
  uint64_t le(int n) {
    std::string_view s = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[i]);
    return v;
  }
  std::string readline() {
    std::size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail(source_, ": pickle truncated at byte ", pos_, " (no end of line)");
    std::string line(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return line;
  }
  int64_t parse_int(const std::string& s, std::size_t pos) const {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (end == s.c_str() || *end != '\0' || errno == ERANGE) bad(pos, "bad integer '", s, "'");
    return v;
  }
  int64_t long_bytes(uint64_t n, std::size_t pos) {
    if (n > 8) bad(pos, "integer of ", n, " bytes does not fit in 64 bits");
    std::string_view s = take(n);
    if (n == 0) return 0;
    uint64_t v = 0;
    for (int i = static_cast<int>(n) - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[i]);
    if (n < 8 && (static_cast<uint8_t>(s[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  // Parses exactly `n` hex digits at s[i..]; -1 if any is not a hex digit.
  static int64_t hex_digits(const std::string& s, std::size_t i, std::size_t n) {
    if (i + n > s.size()) return -1;
    int64_t v = 0;
    for (std::size_t k = i; k < i + n; ++k) {
      const char c = s[k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }
  // Protocol 0 UNICODE (Python 2 cPickle writes these for `unicode` objects): latin-1 bytes with \uXXXX /
  // \UXXXXXXXX escapes (backslash and newline themselves arrive escaped) -> UTF-8. A surrogate pair, as a narrow
  // (UCS-2) Python 2 build writes characters above U+FFFF, is joined into one code point.
  std::string raw_unicode_escape(const std::string& s, std::size_t pos) const {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
        const std::size_t n = s[i + 1] == 'u' ? 4 : 8;
        int64_t cp = hex_digits(s, i + 2, n);
        if (cp < 0 || cp > 0x10FFFF) bad(pos, "bad \\", s[i + 1], " escape in UNICODE string");
        i += 1 + n;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < s.size() && s[i + 1] == '\\' && s[i + 2] == 'u') {
          const int64_t lo = hex_digits(s, i + 3, 4);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        put_utf8(out, static_cast<uint32_t>(cp));
        continue;
      }
      put_utf8(out, static_cast<uint8_t>(s[i]));
    }
    return out;
  }
  // Protocol 0 STRING: a Python repr, 'quoted' with backslash escapes.
  std::string unquote(const std::string& s, std::size_t pos) const {
    if (s.size() < 2 || (s[0] != '\'' && s[0] != '"') || s.back() != s[0]) bad(pos, "bad STRING literal");
    std::string out;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
      char c = s[i];
      if (c != '\\' || i + 2 >= s.size()) {
        out += c;
        continue;
      }
      char e = s[++i];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'x': {
          const int64_t v = i + 3 < s.size() ? hex_digits(s, i + 1, 2) : -1;  // two digits before the closing quote
          if (v < 0) bad(pos, "bad \\x escape in STRING");
          out += static_cast<char>(v);
          i += 2;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0';
            for (int k = 0; k < 2 && i + 1 < s.size() - 1 && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + (s[++i] - '0');
            out += static_cast<char>(v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    return out;
  }

  void push(PyValue v) {
    // Every container passes through the stack before anything can refer to it: remember it for check_shape()
    // and for the clean-up of a refused pickle.
    if (const void* id = v.container_id())
      if (seen_.insert(id).second) containers_.push_back(v);
    stack_.push_back(std::move(v));
  }
  // Refuses cycles and nesting deeper than kMaxPickleDepth, over every container the pickle made (reachable from
  // the result or not). Iterative depth-first search, linear in the containers and their items.
  void check_shape() const {
    enum : int { kOpen = -1 };  // on the current path; a finished container maps to its height
    std::unordered_map<const void*, int> height;
    struct Frame {
      const PyValue* value;
      std::size_t next = 0;  // next child (dict: 2 per entry, key then value)
      int max_child = 0;
    };
    auto child = [](const PyValue& v, std::size_t i) -> const PyValue* {
      if (v.kind() == PyValue::Kind::Dict) {
        const auto& d = v.dict_items();
        if (i >= 2 * d.size()) return nullptr;
        return i % 2 ? &d[i / 2].second : &d[i / 2].first;
      }
      const auto& l = v.items();
      return i < l.size() ? &l[i] : nullptr;
    };
    std::vector<Frame> path;
    for (const PyValue& root : containers_) {
      if (height.count(root.container_id())) continue;
      height[root.container_id()] = kOpen;
      path.push_back(Frame{&root});
      while (!path.empty()) {
        Frame& f = path.back();
        if (const PyValue* c = child(*f.value, f.next++)) {
          const void* id = c->container_id();
          if (!id) continue;
          auto [it, fresh] = height.emplace(id, kOpen);
          if (!fresh) {
            if (it->second == kOpen)
              fail(source_, ": pickle holds a ", c->kind_name(), " that contains itself: cyclic data is refused");
            f.max_child = std::max(f.max_child, it->second);
            continue;
          }
          if (path.size() >= static_cast<std::size_t>(kMaxPickleDepth))
            fail(source_, ": pickle nests containers more than ", kMaxPickleDepth, " deep (the limit of m2sa's reader)");
          path.push_back(Frame{c});
          continue;
        }
        const int h = f.max_child + 1;  // a container finished from another root may already be deep
        if (h > kMaxPickleDepth)
          fail(source_, ": pickle nests containers more than ", kMaxPickleDepth, " deep (the limit of m2sa's reader)");
        height[f.value->container_id()] = h;
        path.pop_back();
        if (!path.empty()) path.back().max_child = std::max(path.back().max_child, h);
      }
    }
  }
  PyValue pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail(source_, ": pickle stack underflow at byte ", pos_);
    PyValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PyValue& top() {
    if (stack_.empty()) fail(source_, ": pickle stack underflow at byte ", pos_);
    return stack_.back();
  }
  PyValue::List pop_n(std::size_t n) {
    if (stack_.size() < n + (marks_.empty() ? 0 : marks_.back())) fail(source_, ": pickle stack underflow at byte ", pos_);
    PyValue::List items(std::make_move_iterator(stack_.end() - n), std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - n);
    return items;
  }
  PyValue::List pop_mark() {
    if (marks_.empty()) fail(source_, ": pickle MARK missing at byte ", pos_);
    std::size_t m = marks_.back();
    marks_.pop_back();
    PyValue::List items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  PyValue memo_get(int64_t key, std::size_t pos) const {
    auto it = memo_.find(key);
    if (it == memo_.end()) bad(pos, "memo key ", key, " was never stored");
    return it->second;
  }
  PyValue make_global(const std::string& name, std::size_t pos) const {
    if (!hooks_.allow_global(name)) bad(pos, "refusing to load global '", name, "': only data may be unpickled");
    return PyValue::global(name);
  }
  void append_to(PyValue& target, const PyValue::List& items, std::size_t pos) {
    if (target.kind() != PyValue::Kind::List && target.kind() != PyValue::Kind::Set)
      bad(pos, "APPEND to a ", target.kind_name());
    auto& dst = target.mutable_items();
    dst.insert(dst.end(), items.begin(), items.end());
  }
  void set_items(PyValue& target, const PyValue::List& kv, std::size_t pos) {
    if (target.kind() != PyValue::Kind::Dict) bad(pos, "SETITEM on a ", target.kind_name());
    auto& d = target.mutable_dict_items();
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) d.emplace_back(kv[i], kv[i + 1]);
  }
  template <typename Fn>
  PyValue call_hook(Fn&& fn, std::size_t pos) const {
    try {
      return fn();
    } catch (const std::exception& e) {
      bad(pos, e.what());
    }
  }

  std::string_view data_;
  std::size_t pos_ = 0;
  const PickleHooks& hooks_;
  const std::string& source_;
  std::vector<PyValue> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<int64_t, PyValue> memo_;
  std::vector<PyValue> containers_;  // every container the pickle made, in order
  std::unordered_set<const void*> seen_;
  bool accepted_ = false;
};

}  // namespace

PyValue unpickle(std::string_view data, const PickleHooks& hooks, const std::string& source) {
  return Unpickler(data, hooks, source).run();
}

}  // namespace m2sa
