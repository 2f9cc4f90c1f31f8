#pragma once
// Test helper: writes Python 2 cPickle-style pickles (protocols 0 and 2) of plain data, the way the RefCOCO
// `refs(unc).p` files were written: MARK + LIST/DICT + PUT with APPEND / SETITEM per item in protocol 0,
// APPENDS / SETITEMS batches, BINPUT / BINGET, SHORT_BINSTRING and BININT* in protocol 2, `str` and `unicode`.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace m2sa::test::py2 {

// A tiny Python 2 value model for the emitter.
struct Py;
using PyList = std::vector<Py>;
using PyDict = std::vector<std::pair<std::string, Py>>;
struct Unicode {
  std::string utf8;
};
struct Py {
  std::variant<int64_t, std::string, Unicode, PyList, PyDict> v;
};

// Emits cPickle-style bytes. Protocol 0: memo ids from 1, `p<n>\n`, strings as repr, unicode as
// raw-unicode-escape. Protocol 2: PROTO 2, BINPUT, SHORT_BINSTRING, BININT1/2/BININT, BINUNICODE; a memoized str
// that repeats (dict keys) is written as a GET, as cPickle does for the same interned object.
class Py2Pickler {
 public:
  explicit Py2Pickler(int proto) : proto_(proto) {}
  std::string dumps(const Py& value) {
    out_.clear();
    if (proto_ == 2) out_ += "\x80\x02";
    save(value);
    out_ += '.';
    return out_;
  }

 private:
  void put() {
    ++memo_;
    if (proto_ == 0) {
      out_ += "p" + std::to_string(memo_) + "\n";
    } else {
      out_ += 'q';
      out_ += static_cast<char>(memo_);
    }
  }
  void save(const Py& p) {
    if (auto* i = std::get_if<int64_t>(&p.v)) {
      if (proto_ == 0) {
        out_ += "I" + std::to_string(*i) + "\n";
      } else if (*i >= 0 && *i < 256) {
        out_ += 'K';
        out_ += static_cast<char>(*i);
      } else if (*i >= 0 && *i < 65536) {
        out_ += 'M';
        out_ += static_cast<char>(*i & 0xff);
        out_ += static_cast<char>(*i >> 8);
      } else {
        out_ += 'J';
        for (int k = 0; k < 4; ++k) out_ += static_cast<char>((*i >> (8 * k)) & 0xff);
      }
    } else if (auto* s = std::get_if<std::string>(&p.v)) {
      auto it = strings_.find(*s);
      if (it != strings_.end()) {  // same interned object -> GET
        if (proto_ == 0) {
          out_ += "g" + std::to_string(it->second) + "\n";
        } else {
          out_ += 'h';
          out_ += static_cast<char>(it->second);
        }
        return;
      }
      if (proto_ == 0) {
        std::string repr = "'";
        for (char c : *s) {
          if (c == '\'') repr += "\\'";
          else if (c == '\\') repr += "\\\\";
          else if (c == '\n') repr += "\\n";
          else if (static_cast<unsigned char>(c) >= 0x80) {
            const char* d = "0123456789abcdef";
            repr += "\\x";
            repr += d[static_cast<unsigned char>(c) >> 4];
            repr += d[static_cast<unsigned char>(c) & 15];
          } else repr += c;
        }
        out_ += "S" + repr + "'\n";
      } else {
        out_ += 'U';
        out_ += static_cast<char>(s->size());
        out_ += *s;
      }
      put();
      strings_[*s] = memo_;
    } else if (auto* u = std::get_if<Unicode>(&p.v)) {
      if (proto_ == 0) {
        out_ += "V" + u->utf8 + "\n";  // the tests pass raw-unicode-escape text here
      } else {
        out_ += 'X';
        const uint32_t n = static_cast<uint32_t>(u->utf8.size());
        for (int k = 0; k < 4; ++k) out_ += static_cast<char>((n >> (8 * k)) & 0xff);
        out_ += u->utf8;
      }
      put();
    } else if (auto* l = std::get_if<PyList>(&p.v)) {
      if (proto_ == 0) {
        out_ += "(l";
        put();
        for (const Py& x : *l) {
          save(x);
          out_ += 'a';
        }
      } else {
        out_ += ']';
        put();
        if (l->size() == 1) {
          save((*l)[0]);
          out_ += 'a';
        } else if (!l->empty()) {
          out_ += '(';
          for (const Py& x : *l) save(x);
          out_ += 'e';
        }
      }
    } else if (auto* d = std::get_if<PyDict>(&p.v)) {
      if (proto_ == 0) {
        out_ += "(d";
        put();
        for (const auto& [k, v] : *d) {
          save(Py{k});
          save(v);
          out_ += 's';
        }
      } else {
        out_ += '}';
        put();
        if (d->size() == 1) {
          save(Py{d->front().first});
          save(d->front().second);
          out_ += 's';
        } else if (!d->empty()) {
          out_ += '(';
          for (const auto& [k, v] : *d) {
            save(Py{k});
            save(v);
          }
          out_ += 'u';
        }
      }
    }
  }

  int proto_;
  int memo_ = 0;
  std::string out_;
  std::map<std::string, int> strings_;
};

inline Py I(int64_t v) { return Py{v}; }
inline Py S(std::string v) { return Py{std::move(v)}; }
inline Py L(PyList v) { return Py{std::move(v)}; }
inline Py D(PyDict v) { return Py{std::move(v)}; }

}  // namespace m2sa::test::py2
