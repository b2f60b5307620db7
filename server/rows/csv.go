package rows

import (
	"encoding/csv"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Columns returns the column names of a row type (Logon, Server or Host):
// the JSON names of its fields, in order.
func Columns[T any]() []string {
	t := reflect.TypeFor[T]()
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// Values returns a row's cells as text, in the order of Columns: numbers in
// decimal, booleans as true/false, an absent number as "".
func Values[T any](row T) []string {
	v := reflect.ValueOf(row)
	out := make([]string, 0, v.NumField())
	for i := range v.NumField() {
		out = append(out, cell(v.Field(i)))
	}
	return out
}

func cell(f reflect.Value) string {
	switch f.Kind() {
	case reflect.Pointer:
		if f.IsNil() {
			return ""
		}
		return cell(f.Elem())
	case reflect.String:
		return f.String()
	case reflect.Bool:
		return strconv.FormatBool(f.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(f.Int(), 10)
	}
	panic("rows: no cell format for " + f.Type().String())
}

// Neutralize makes a CSV cell safe to open in a spreadsheet: a cell that
// begins with =, +, -, @, a tab or a carriage return gets a leading single
// quote, so that it is shown as text and never evaluated as a formula.
func Neutralize(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// CSVWriter writes rows of one type as CSV with a header line, each cell
// neutralized.
type CSVWriter[T any] struct {
	w      *csv.Writer
	header bool
}

// NewCSVWriter returns a CSVWriter on w.
func NewCSVWriter[T any](w io.Writer) *CSVWriter[T] { return &CSVWriter[T]{w: csv.NewWriter(w)} }

// Write writes rows, after the header if none was written yet.
func (c *CSVWriter[T]) Write(rows ...T) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(Columns[T]()); err != nil {
			return err
		}
	}
	for _, r := range rows {
		vals := Values(r)
		for i, v := range vals {
			vals[i] = Neutralize(v)
		}
		if err := c.w.Write(vals); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes the header if nothing was written (an empty result is still
// a CSV file with its columns), flushes, and returns any write error.
func (c *CSVWriter[T]) Flush() error {
	if !c.header {
		if err := c.Write(); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}
