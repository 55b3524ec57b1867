// Bundle entry: FATE-Board's metric transform, the function its transform/index.ts calls as
// `metricsExplain(metricsData, role, partyId, component, comp_type, id)`. Not FATE-Board code.
export { default as metricsExplain } from '@/transform/metric/index';
