# The analysis components the `.security` index needs, for the secured Elasticsearch only
# (sourced by scripts/lib/secured.sh). API keys live in `.security`, whose settings name the
# token filter `pattern_capture`, the tokenizer `uax_url_email` and the filter `unique`: in the
# full distribution they come from the analysis-common module, which the integ-test zip lacks
# and Maven does not serve. scripts/es-analysis/ is a small stable analysis plugin written here
# that provides exactly those three over Lucene's own classes; it is compiled with the JDK's javac
# against the plugin API jars inside the zip's lib/ (no Maven build), and installed into a copy
# of the Elasticsearch home, so the default test and dev Elasticsearch stays untouched.
# shellcheck shell=bash

ES_ANALYSIS_SRC="$ROOT/scripts/es-analysis"

# es_analysis_hash: a hash of the plugin's sources and of the Elasticsearch version it is built
# for; the built plugin and the Elasticsearch home it is installed in are cached under it.
es_analysis_hash() {
  (
    cd "$ES_ANALYSIS_SRC" || exit 1
    find . -type f \( -name '*.java' -o -name '*.json' \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    printf 'elasticsearch %s\n' "$ES_VERSION"
  ) | sha256sum | cut -c1-12
}

# build_es_analysis_plugin ZIP: compiles scripts/es-analysis/src against the zip's plugin API
# and Lucene jars and writes the plugin zip (one jar + stable-plugin-descriptor.properties +
# named_components.json) to ZIP. Prints how long it took.
build_es_analysis_plugin() {
  local zip=$1 t0 work jdk="$ES_JAVA_HOME/bin" lib="$ES_HOME/lib" cp
  t0=$(date +%s%N)
  work=$(mktemp -d)
  cp="$lib/elasticsearch-plugin-api-$ES_VERSION.jar:$lib/elasticsearch-plugin-analysis-api-$ES_VERSION.jar"
  cp="$cp:$(echo "$lib"/lucene-analysis-common-*.jar):$(echo "$lib"/lucene-core-*.jar)"
  mkdir -p "$work/classes" "$work/plugin"
  # shellcheck disable=SC2046 # the list of sources
  timeout 300 "$jdk/javac" --release 21 -Xlint:all -Werror -proc:none -cp "$cp" -d "$work/classes" \
    $(find "$ES_ANALYSIS_SRC/src" -name '*.java' | LC_ALL=C sort) \
    || { rm -rf "$work"; warn "javac failed on $ES_ANALYSIS_SRC/src"; return 1; }
  "$jdk/jar" --create --file "$work/plugin/conveyor-es-analysis.jar" -C "$work/classes" . \
    || { rm -rf "$work"; return 1; }
  cp "$ES_ANALYSIS_SRC/named_components.json" "$work/plugin/"
  cat > "$work/plugin/stable-plugin-descriptor.properties" <<EOT
name=conveyor-es-analysis
description=pattern_capture, uax_url_email and unique for the .security index (Conveyor tests)
version=1.0.0
elasticsearch.version=$ES_VERSION
java.version=21
EOT
  rm -f "$zip"
  # a plain zip (no manifest), the files at its root as elasticsearch-plugin expects
  "$jdk/jar" --create --no-manifest --file "$zip" -C "$work/plugin" . || { rm -rf "$work"; return 1; }
  rm -rf "$work"
  log "built the analysis plugin $(basename "$zip") in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

# ensure_secured_es_home: sets SECURED_ES_HOME, a copy of ES_HOME with the analysis plugin
# installed (bin/elasticsearch-plugin install --batch), made once per plugin hash; older copies
# are removed. Needs ES_HOME, ES_JAVA_HOME and ES_USER (scripts/provision.sh).
ensure_secured_es_home() {
  local hash home zip t0
  hash=$(es_analysis_hash) || die "cannot hash $ES_ANALYSIS_SRC"
  home="$CONVEYOR_HOME/elasticsearch-$ES_VERSION-analysis-$hash"
  SECURED_ES_HOME=$home # read by start_secured_elasticsearch (scripts/lib/secured.sh)
  export SECURED_ES_HOME
  if [ -f "$home/.complete" ]; then log "reusing $home (analysis plugin $hash)"; return 0; fi
  t0=$SECONDS
  local old; for old in "$CONVEYOR_HOME/elasticsearch-$ES_VERSION-analysis-"*; do
    [ "$old" = "$home" ] || [ ! -e "$old" ] || rm -rf "$old" # older plugin versions
  done
  rm -rf "$home" "$home.zip"
  build_es_analysis_plugin "$home.zip" || die "could not build the analysis plugin for the secured Elasticsearch"
  log "installing it into a copy of Elasticsearch $ES_VERSION: $home"
  cp -a "$ES_HOME" "$home" || die "could not copy $ES_HOME"
  rm -rf "$home/plugins"/* "$home/logs"/*
  ES_JAVA_HOME="$ES_JAVA_HOME" timeout 300 "$home/bin/elasticsearch-plugin" install --batch --silent "file://$home.zip" \
    || { rm -rf "$home"; die "bin/elasticsearch-plugin could not install the analysis plugin"; }
  rm -f "$home.zip"
  chown -R "$ES_USER:$ES_USER" "$home"
  touch "$home/.complete"
  log "secured Elasticsearch home ready in $((SECONDS - t0)) s"
}
