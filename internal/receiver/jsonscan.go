package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of an event body. Real events nest five levels deep.
const maxJSONDepth = 32

// checkJSON checks that body is one well-formed JSON object in UTF-8, nested at most
// maxJSONDepth levels, in which no object repeats a key. encoding/json silently keeps the last
// of two equal keys, so {"build-status":"FAILED","build-status":"SUCCEEDED"} would read as a
// success to one parser and a failure to another; such a body is rejected instead.
func checkJSON(body []byte) error {
	if !utf8.Valid(body) {
		return errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		name   string
	}
	var stack []frame
	expectKey := false
	lastKey := ""
	tokens := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if tokens == 0 {
				return errors.New("invalid JSON: empty body")
			}
			if len(stack) != 0 {
				return errors.New("invalid JSON: unexpected end of input")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		tokens++
		if tokens == 1 && tok != json.Delim('{') {
			return errors.New("invalid JSON: the body must be an object")
		}
		if len(stack) == 0 && tokens > 1 {
			return errors.New("invalid JSON: unexpected data after the object")
		}
		top := len(stack) - 1
		if expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:top]
				expectKey = len(stack) > 0 && stack[len(stack)-1].object
				continue
			}
			key := tok.(string) // the decoder guarantees a string key here
			if stack[top].keys[key] {
				return fmt.Errorf("invalid JSON: key %q appears more than once in %s", key, stack[top].name)
			}
			stack[top].keys[key] = true
			lastKey = key
			expectKey = false
			continue
		}
		// A value: in an object it is followed by a key again.
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) >= maxJSONDepth {
					return fmt.Errorf("invalid JSON: nested deeper than %d levels", maxJSONDepth)
				}
				// The name is only needed for a nested object or array, to name it in errors.
				name := "the body"
				if top >= 0 {
					name = fmt.Sprintf("%q", lastKey)
					if !stack[top].object {
						name = "an element of " + stack[top].name
					}
				}
				f := frame{object: d == '{', name: name}
				if f.object {
					f.keys = map[string]bool{}
				}
				stack = append(stack, f)
				expectKey = d == '{'
				continue
			case ']':
				stack = stack[:top]
			}
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1].object
	}
}

// object is a JSON object read with exact (case-sensitive) key matching, unlike decoding into
// a struct, where "SOURCE" or "ſource" would fill the field source.
type object map[string]json.RawMessage

func parseObject(raw json.RawMessage, name string) (object, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%s must be an object", name)
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return o, nil
}

// str returns the string at key; ok is false when the key is absent or null.
func (o object) str(key string) (s string, ok bool, err error) {
	raw, present := o[key]
	if !present || string(raw) == "null" {
		return "", false, nil
	}
	if raw[0] != '"' {
		return "", false, errors.New("must be a string")
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, errors.New("must be a string")
	}
	return s, true, nil
}

// obj returns the object at key, nil when absent or null.
func (o object) obj(key string) (object, error) {
	raw, present := o[key]
	if !present || string(raw) == "null" {
		return nil, nil
	}
	o2, err := parseObject(raw, "value")
	if err != nil {
		return nil, errors.New("must be an object")
	}
	return o2, nil
}
