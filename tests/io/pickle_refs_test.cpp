// The RefCOCO `refs(unc).p` / `refs(umd).p` files were written by Python 2 cPickle (protocol 0 by default, 2
// with `protocol=2`). These tests build such pickles byte by byte, the way cPickle lays them out (MARK + LIST/DICT
// + PUT, APPEND / SETITEM per item in protocol 0, APPENDS / SETITEMS batches, BINPUT / BINGET and SHORT_BINSTRING
// in protocol 2, `str` and `unicode` values) and read them with the data-only unpickler.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/io/pickle.h"

namespace m2sa {
namespace {

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

Py I(int64_t v) { return Py{v}; }
Py S(std::string v) { return Py{std::move(v)}; }
Py L(PyList v) { return Py{std::move(v)}; }
Py D(PyDict v) { return Py{std::move(v)}; }

Py sentence(int64_t id, std::vector<std::string> tokens, Py raw, std::string sent) {
  PyList toks;
  for (auto& t : tokens) toks.push_back(S(t));
  return D({{"tokens", L(toks)}, {"raw", std::move(raw)}, {"sent_id", I(id)}, {"sent", S(std::move(sent))}});
}

// The real structure of one refs(unc).p entry.
Py refs_fixture(Py unicode_raw) {
  Py r0 = D({{"sent_ids", L({I(0), I(1)})},
             {"file_name", S("COCO_train2014_000000581857_16.jpg")},
             {"ann_id", I(1719310)},
             {"ref_id", I(0)},
             {"image_id", I(581857)},
             {"split", S("train")},
             {"sentences", L({sentence(0, {"the", "lady", "with", "the", "blue", "shirt"}, S("THE LADY WITH THE BLUE SHIRT"),
                                       "the lady with the blue shirt"),
                              sentence(1, {"lady", "w", "back", "to", "us"}, S("lady w back to us"), "lady w back to us")})},
             {"category_id", I(1)}});
  Py r1 = D({{"sent_ids", L({I(2)})},
             {"file_name", S("COCO_train2014_000000581857_17.jpg")},
             {"ann_id", I(1384)},
             {"ref_id", I(1)},
             {"image_id", I(581857)},
             {"split", S("testA")},
             {"sentences", L({sentence(2, {"cafe", "man"}, std::move(unicode_raw), "cafe man")})},
             {"category_id", I(1)}});
  return L({r0, r1});
}

void check_refs(const PyValue& refs, const std::string& expected_raw) {
  ASSERT_EQ(refs.kind(), PyValue::Kind::List);
  ASSERT_EQ(refs.items().size(), 2u);
  const PyValue& r0 = refs.items()[0];
  EXPECT_EQ(r0.at("ann_id").as_int(), 1719310);
  EXPECT_EQ(r0.at("image_id").as_int(), 581857);
  EXPECT_EQ(r0.at("ref_id").as_int(), 0);
  EXPECT_EQ(r0.at("category_id").as_int(), 1);
  EXPECT_EQ(r0.at("split").as_str(), "train");
  EXPECT_EQ(r0.at("file_name").as_str(), "COCO_train2014_000000581857_16.jpg");
  ASSERT_EQ(r0.at("sent_ids").items().size(), 2u);
  EXPECT_EQ(r0.at("sent_ids").items()[1].as_int(), 1);
  const auto& sents = r0.at("sentences").items();
  ASSERT_EQ(sents.size(), 2u);
  EXPECT_EQ(sents[0].at("sent").as_str(), "the lady with the blue shirt");
  EXPECT_EQ(sents[0].at("raw").as_str(), "THE LADY WITH THE BLUE SHIRT");
  EXPECT_EQ(sents[0].at("tokens").items().size(), 6u);
  EXPECT_EQ(sents[0].at("tokens").items()[5].as_str(), "shirt");
  EXPECT_EQ(sents[1].at("sent_id").as_int(), 1);
  const PyValue& r1 = refs.items()[1];
  EXPECT_EQ(r1.at("split").as_str(), "testA");
  EXPECT_EQ(r1.at("ann_id").as_int(), 1384);
  EXPECT_EQ(r1.at("sentences").items()[0].at("raw").as_str(), expected_raw);
}

TEST(PickleRefs, Protocol0AsPython2CPickle) {
  // raw-unicode-escape: latin-1 bytes stay raw (0xE9 = e-acute), \u2019 and a surrogate pair are escapes.
  std::string raw = std::string("caf\xe9 man\\u2019s \\ud83d\\ude00");
  std::string bytes = Py2Pickler(0).dumps(refs_fixture(Py{Unicode{raw}}));
  EXPECT_EQ(bytes.substr(0, 16), "(lp1\n(dp2\nS'sent");  // the cPickle protocol 0 layout
  PyValue refs = unpickle(bytes, PickleHooks{}, "refs(unc).p");
  check_refs(refs, "caf\xc3\xa9 man\xe2\x80\x99s \xf0\x9f\x98\x80");
}

TEST(PickleRefs, Protocol2AsPython2CPickle) {
  std::string bytes = Py2Pickler(2).dumps(refs_fixture(Py{Unicode{"caf\xc3\xa9 man"}}));
  EXPECT_EQ(bytes.substr(0, 6), std::string("\x80\x02]q\x01(", 6));
  PyValue refs = unpickle(bytes, PickleHooks{}, "refs(umd).p");
  check_refs(refs, "caf\xc3\xa9 man");
}

TEST(PickleRefs, LiteralProtocol0Bytes) {
  // cPickle.dumps([{'split': 'val', 'ann_id': 5L, 'ok': True, 'raw': "it's"}]) with Python 2 longs and bools.
  const std::string bytes =
      "(lp1\n(dp2\nS'split'\np3\nS'val'\np4\nsS'ann_id'\np5\nL5L\nsS'ok'\np6\nI01\nsS'raw'\np7\nS\"it's\"\np8\nsa.";
  PyValue v = unpickle(bytes, PickleHooks{}, "refs(unc).p");
  const PyValue& d = v.items().at(0);
  EXPECT_EQ(d.at("split").as_str(), "val");
  EXPECT_EQ(d.at("ann_id").as_int(), 5);
  EXPECT_TRUE(d.at("ok").as_bool());
  EXPECT_EQ(d.at("raw").as_str(), "it's");
}

TEST(PickleRefs, BadEscapesAreErrorsNamingTheFile) {
  auto err = [](const std::string& bytes) {
    try {
      unpickle(bytes, PickleHooks{}, "refs(unc).p");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("Vab\\uzz12\np0\n.").find("refs(unc).p: pickle at byte 0: bad \\u escape"), std::string::npos);
  EXPECT_NE(err("S'a\\xg1'\np0\n.").find("bad \\x escape"), std::string::npos);
  EXPECT_NE(err("(lp1\ncposix\nsystem\n.").find("refusing to load global 'posix.system'"), std::string::npos);
}

}  // namespace
}  // namespace m2sa
