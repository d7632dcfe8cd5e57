{{/* retailflow.seconds: a duration of the form <integer>s|m|h as seconds (for comparisons with time()). */}}
{{- define "retailflow.seconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^[0-9]+[smh]$" $d) -}}
{{- fail (printf "prometheusRule: duration %q must be an integer followed by s, m or h" $d) -}}
{{- end -}}
{{- $n := int (regexFind "^[0-9]+" $d) -}}
{{- if hasSuffix "h" $d -}}{{ mul $n 3600 }}{{- else if hasSuffix "m" $d -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end -}}
