package config

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Group Policy templates (deploy/windows/policy), checked against
// Definitions: the settings the agent reads from PolicyKey.
const (
	admxPath = "../../deploy/windows/policy/sessionaudit.admx"
	admlPath = "../../deploy/windows/policy/en-US/sessionaudit.adml"
)

// admx is the part of an ADMX file the test reads.
type admx struct {
	Policies []admxPolicy `xml:"policies>policy"`
}

type admxPolicy struct {
	Name          string        `xml:"name,attr"`
	Class         string        `xml:"class,attr"`
	Key           string        `xml:"key,attr"`
	ValueName     string        `xml:"valueName,attr"`
	DisplayName   string        `xml:"displayName,attr"`
	ExplainText   string        `xml:"explainText,attr"`
	Presentation  string        `xml:"presentation,attr"`
	EnabledValue  *admxDecimal  `xml:"enabledValue>decimal"`
	DisabledValue *admxDecimal  `xml:"disabledValue>decimal"`
	Elements      *admxElements `xml:"elements"`
}

type admxDecimal struct {
	Value string `xml:"value,attr"`
}

type admxElements struct {
	Texts    []admxElement `xml:"text"`
	Decimals []admxElement `xml:"decimal"`
	Enums    []admxEnum    `xml:"enum"`
	Others   []xml.Name    `xml:",any"`
}

type admxElement struct {
	ID        string `xml:"id,attr"`
	Key       string `xml:"key,attr"`
	ValueName string `xml:"valueName,attr"`
	MinValue  string `xml:"minValue,attr"`
	MaxValue  string `xml:"maxValue,attr"`
}

type admxEnum struct {
	admxElement
	Items []struct {
		DisplayName string `xml:"displayName,attr"`
		String      string `xml:"value>string"`
	} `xml:"item"`
}

// adml is the part of an ADML file the test reads.
type adml struct {
	Strings []struct {
		ID   string `xml:"id,attr"`
		Text string `xml:",chardata"`
	} `xml:"resources>stringTable>string"`
	Presentations []struct {
		ID       string `xml:"id,attr"`
		Controls []struct {
			XMLName xml.Name
			RefID   string `xml:"refId,attr"`
		} `xml:",any"`
	} `xml:"resources>presentationTable>presentation"`
}

// wellFormed reads every token of the XML file at path.
func wellFormed(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the template: %v", err)
	}
	d := xml.NewDecoder(strings.NewReader(string(data)))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, _ := d.InputPos()
			t.Fatalf("%s is not well-formed XML (line %d): %v", path, line, err)
		}
	}
	return data
}

// TestPolicyTemplates checks that the ADMX and ADML files are well-formed
// and agree with each other, that every setting the agent reads from
// PolicyKey has exactly one policy writing its value there with the right
// type and bounds, and that every value the ADMX writes is a setting.
func TestPolicyTemplates(t *testing.T) {
	var defs admx
	if err := xml.Unmarshal(wellFormed(t, admxPath), &defs); err != nil {
		t.Fatalf("%s: %v", admxPath, err)
	}
	var res adml
	if err := xml.Unmarshal(wellFormed(t, admlPath), &res); err != nil {
		t.Fatalf("%s: %v", admlPath, err)
	}
	stringText := map[string]string{}
	for _, s := range res.Strings {
		if _, dup := stringText[s.ID]; dup {
			t.Errorf("ADML: string %s defined twice", s.ID)
		}
		stringText[s.ID] = s.Text
	}
	presentations := map[string][]string{} // id → refIds of its controls
	for _, p := range res.Presentations {
		for _, c := range p.Controls {
			presentations[p.ID] = append(presentations[p.ID], c.RefID)
		}
		if _, ok := presentations[p.ID]; !ok {
			presentations[p.ID] = nil
		}
	}
	str := func(policy, ref string) string {
		t.Helper()
		m := regexp.MustCompile(`^\$\(string\.([A-Za-z0-9_]+)\)$`).FindStringSubmatch(ref)
		if m == nil {
			t.Errorf("%s: %q is not a $(string.ID) reference", policy, ref)
			return ""
		}
		text, ok := stringText[m[1]]
		if !ok {
			t.Errorf("%s: string %s is not in the ADML", policy, m[1])
		}
		return text
	}

	written := map[string]string{} // registry value name → the policy writing it
	for _, p := range defs.Policies {
		if p.Class != "Machine" {
			t.Errorf("%s: class %q, want Machine (the agent reads HKLM)", p.Name, p.Class)
		}
		if p.Key != PolicyKey {
			t.Errorf("%s: key %q, want %q (PolicyKey)", p.Name, p.Key, PolicyKey)
		}
		str(p.Name, p.DisplayName)
		explain := str(p.Name, p.ExplainText)
		if !strings.Contains(explain, `HKLM\`+PolicyKey+`\`+p.Name) {
			t.Errorf("%s: the explanation does not name its registry value %s", p.Name, `HKLM\`+PolicyKey+`\`+p.Name)
		}
		d, ok := Lookup(p.Name)
		if !ok || d.Name != p.Name {
			t.Errorf("%s: the policy's name is not a setting of the agent (Definitions)", p.Name)
			continue
		}
		if d.Default != "" && !strings.Contains(explain, d.Default) && !d.Switch() && d.Name != LogLevel {
			t.Errorf("%s: the explanation does not give the default %s", p.Name, d.Default)
		}
		var values []string
		if p.ValueName != "" {
			values = append(values, p.ValueName)
		}
		var elements []admxElement
		if p.Elements != nil {
			if len(p.Elements.Others) > 0 {
				t.Errorf("%s: elements the test does not know: %v", p.Name, p.Elements.Others)
			}
			elements = append(elements, p.Elements.Texts...)
			elements = append(elements, p.Elements.Decimals...)
			for _, e := range p.Elements.Enums {
				elements = append(elements, e.admxElement)
			}
			// Every element is shown by the policy's presentation.
			m := regexp.MustCompile(`^\$\(presentation\.([A-Za-z0-9_]+)\)$`).FindStringSubmatch(p.Presentation)
			if m == nil {
				t.Errorf("%s: presentation %q is not a $(presentation.ID) reference", p.Name, p.Presentation)
			} else if refs, ok := presentations[m[1]]; !ok {
				t.Errorf("%s: presentation %s is not in the ADML", p.Name, m[1])
			} else {
				for _, e := range elements {
					if !slices.Contains(refs, e.ID) {
						t.Errorf("%s: element %s has no control in presentation %s", p.Name, e.ID, m[1])
					}
				}
			}
		}
		for _, e := range elements {
			if e.Key != "" && e.Key != PolicyKey {
				t.Errorf("%s: element %s writes under %q, want %q", p.Name, e.ID, e.Key, PolicyKey)
			}
			values = append(values, e.ValueName)
		}
		if len(values) != 1 || values[0] != d.Name {
			t.Errorf("%s: writes the values %q, want exactly %q", p.Name, values, d.Name)
			continue
		}
		if prev, dup := written[d.Name]; dup {
			t.Errorf("%s: value %s also written by policy %s", p.Name, d.Name, prev)
		}
		written[d.Name] = p.Name

		// The type of the value matches the setting's.
		switch {
		case d.Switch():
			if p.EnabledValue == nil || p.EnabledValue.Value != "1" || p.DisabledValue == nil || p.DisabledValue.Value != "0" || p.Elements != nil {
				t.Errorf("%s: a 0/1 switch wants a policy value with enabledValue decimal 1, disabledValue decimal 0, no elements", p.Name)
			}
		case d.Type == DWORD:
			if p.Elements == nil || len(p.Elements.Decimals) != 1 {
				t.Errorf("%s: a REG_DWORD setting wants one decimal element", p.Name)
				continue
			}
			e := p.Elements.Decimals[0]
			if e.MinValue != strconv.FormatUint(uint64(d.Min), 10) || e.MaxValue != strconv.FormatUint(uint64(d.Max), 10) {
				t.Errorf("%s: bounds %s–%s, the agent accepts %d–%d", p.Name, e.MinValue, e.MaxValue, d.Min, d.Max)
			}
		case d.Type == String:
			if p.Elements == nil || len(p.Elements.Texts)+len(p.Elements.Enums) != 1 || len(p.Elements.Decimals) != 0 {
				t.Errorf("%s: a REG_SZ setting wants one text or enum element", p.Name)
				continue
			}
			for _, e := range p.Elements.Enums {
				for _, item := range e.Items {
					str(p.Name, item.DisplayName)
					var s Settings
					if err := d.set(&s, item.String); err != nil {
						t.Errorf("%s: the agent refuses the item value %q: %v", p.Name, item.String, err)
					}
				}
			}
		}
	}
	for _, d := range Definitions {
		if _, ok := written[d.Name]; !ok {
			t.Errorf("setting %s is read from %s but no policy in %s writes it", d.Name, PolicyKeyPath, admxPath)
		}
	}
}
