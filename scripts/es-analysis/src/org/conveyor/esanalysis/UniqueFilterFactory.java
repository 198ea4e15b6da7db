package org.conveyor.esanalysis;

import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.plugin.Inject;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;
import org.elasticsearch.plugin.settings.AnalysisSettings;
import org.elasticsearch.plugin.settings.BooleanSetting;

/**
 * Token filter {@code unique}: a term that was already emitted is dropped (across the whole
 * stream, or only at the same position with {@code only_on_same_position}). The
 * {@code .security} index's {@code email} analyzer ends with it.
 */
@NamedComponent("unique")
public final class UniqueFilterFactory implements TokenFilterFactory {

    /** The filter's settings. */
    @AnalysisSettings
    public interface Settings {
        @BooleanSetting(path = "only_on_same_position", defaultValue = false)
        boolean onlyOnSamePosition();
    }

    private final boolean onlyOnSamePosition;

    @Inject
    public UniqueFilterFactory(Settings settings) {
        this.onlyOnSamePosition = settings.onlyOnSamePosition();
    }

    @Override
    public TokenStream create(TokenStream input) {
        return new UniqueTokenFilter(input, onlyOnSamePosition);
    }
}
